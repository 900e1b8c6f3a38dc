"""Events from the audit trail: each record's event (pure), the published schema, the
reader (across rotation, following the live file), and whole simulated rollouts on
init's defaults with a real AuditLog: Given a rollout, When its events are read, Then
every state change is there exactly once, in order, and valid against the schema."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from bench.support.sim import SimWorld, TrackModel, init_manifest, sim_world
from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError

from swiftdeploy.audit.log import AuditLog, trail_files
from swiftdeploy.audit.recorder import AuditRecorder
from swiftdeploy.commands.canary import start_canary
from swiftdeploy.commands.promote import promote
from swiftdeploy.commands.weight import set_weight
from swiftdeploy.errors import AuditTamperedError, BadInputError, PolicyDeniedError
from swiftdeploy.manifest import HOOK_TYPES
from swiftdeploy.policy import EmbeddedEngine
from swiftdeploy.review.events import (
    ROLLOUT_EVENTS,
    SCHEMA_ID,
    Projector,
    Since,
    TrailTail,
    all_types,
    derive_event,
    event_of,
    matches,
    parse_since,
    pattern_problem,
    read_events,
    schema_text,
)
from swiftdeploy.rollout.engine import RolloutEngine
from swiftdeploy.state import Phase
from tests.support.trails import (
    BY_HAND,
    NO_DATA,
    NO_LOOK,
    NO_STEP,
    PROMOTED,
    ROLLED_BACK,
    a_decision,
    write_awkward_trail,
    write_synthetic_trail,
)

ROOT = Path(__file__).resolve().parents[2]
POLICIES = ROOT / "policies"
DOC = ROOT / "docs" / "events.md"
SCHEMA = json.loads(schema_text())
VALIDATOR = Draft202012Validator(SCHEMA, format_checker=Draft202012Validator.FORMAT_CHECKER)


def names(events: list[dict[str, Any]]) -> list[str]:
    """`rollout.step` for dev.swiftdeploy.rollout.step.v1."""
    return [e["type"].removeprefix("dev.swiftdeploy.").removesuffix(".v1") for e in events]


# --- one record, one event --------------------------------------------------------------

_seq = iter(range(1, 1_000_000))


def record(kind: str, **fields: Any) -> dict[str, Any]:
    """A record as the log writes it (envelope fields filled in)."""
    seq = next(_seq)
    return {
        "id": f"id-{seq}",
        "seq": seq,
        "ts": "2025-03-14T09:00:00.000Z",
        "kind": kind,
        "actor": {"user": "alice", "host": "h", "pid": 42},
        "command": ["swiftdeploy", "test"],
        "prev_hash": "0" * 64,
        "hash": f"{seq:064x}",
        "rollout_id": "r1",
        **fields,
    }


def transition(before: str, after: str, reason: str, **fields: Any) -> dict[str, Any]:
    values = {
        "stable_version": "v1",
        "canary_version": "v2",
        "step_index": 0,
        "canary_weight": 10,
        "pause_kind": None,
        **fields,
    }
    return record("transition", phase_before=before, phase_after=after, reason=reason, **values)


def decision(action: str, **fields: Any) -> dict[str, Any]:
    return record("decision", decision=a_decision(), step_index=0, action=action, **fields)


def valid(event: dict[str, Any] | None) -> dict[str, Any]:
    assert event is not None
    VALIDATOR.validate(event)
    return event


def test_a_transition_becomes_a_cloudevent_with_numbers_as_numbers() -> None:
    step = transition("progressing", "progressing", "step 2: canary weight 25%",
                      event="step", step_index=1, canary_weight=25)  # fmt: skip
    event = valid(event_of(step, "shop", steps=3))
    assert event == {
        "specversion": "1.0",
        "id": step["hash"],
        "source": "swiftdeploy://shop",
        "type": "dev.swiftdeploy.rollout.step.v1",
        "subject": "r1",
        "time": "2025-03-14T09:00:00.000Z",
        "datacontenttype": "application/json",
        "dataschema": SCHEMA_ID,
        "seq": step["seq"],
        "data": {
            "rollout_id": "r1",
            "phase": "progressing",
            "stable_version": "v1",
            "canary_version": "v2",
            "weight": 25,
            "step": 2,
            "steps": 3,
            "reason": "step 2: canary weight 25%",
            "by": "alice",
        },
    }
    assert SCHEMA["$id"] == SCHEMA_ID


def test_the_records_event_field_wins_and_null_or_unknown_is_no_event() -> None:
    resumed = transition("paused", "progressing", "carried on", event="resumed")
    assert names([valid(event_of(resumed, "shop"))]) == ["rollout.resumed"]
    assert event_of(transition("paused", "progressing", "x", event=None), "shop") is None
    assert event_of(transition("paused", "progressing", "x", event="teleported"), "shop") is None


def test_who_asked_is_by_when_the_record_names_them() -> None:
    paused = transition("progressing", "paused", "paused by bob", event="paused",
                        pause_kind="operator", requested_by="bob")  # fmt: skip
    assert valid(event_of(paused, "shop"))["data"]["by"] == "bob"


# Transitions as the engine and the commands have always written them (no `event`):
# (phase_before, phase_after, pause_kind, reason, step moved since the last one) -> event
FALLBACK = [
    ("idle", "progressing", None, "rollout of v2 started", False, "started"),
    ("promoted", "progressing", None, "rollout of v3 started", False, "started"),
    ("rolled-back", "progressing", None, "canary v4 started by hand", False, "canary"),
    ("progressing", "progressing", None, "step 1: canary weight 10%", False, "step"),
    ("paused", "progressing", None, "step 2: canary weight 25%", True, "step"),
    ("progressing", "progressing", None, "promoted by hand to step 2", True, "step"),
    ("progressing", "paused", "held", "held: latency: 691 more canary requests", False, "held"),
    ("progressing", "paused", "manual", "step passed; waiting for `swiftdeploy promote`",
     False, "passed"),
    ("progressing", "paused", "timed", "step passed; pausing 30s", False, "passed"),
    ("progressing", "paused", "operator", "paused by hand", False, "paused"),
    ("paused", "progressing", None, "resumed: the step keeps its evidence", False, "resumed"),
    ("progressing", "progressing", None, "canary weight set to 30% by hand", False, "weight"),
    ("progressing", "promoting", None, "promoting v2 to stable", False, "promoting"),
    ("promoting", "promoted", None, "v2 promoted", False, "promoted"),
    ("progressing", "rolling-back", None, "rollback: canary errors worse", False, "rolling-back"),
    ("paused", "rolling-back", None, "rollback: aborted by hand", False, "aborted"),
    ("rolling-back", "rolled-back", None, "rolled back", False, "rolled-back"),
    ("promoted", "idle", None, "v3 deployed as stable", False, None),
    ("idle", "idle", None, "v1 deployed as stable", False, None),
]  # fmt: skip


@pytest.mark.parametrize(("before", "after", "pause", "reason", "moved", "expected"), FALLBACK)
def test_the_fallback_derives_the_change_from_the_phases(
    before: str, after: str, pause: str | None, reason: str, moved: bool, expected: str | None
) -> None:
    previous = transition("progressing", before, "before", step_index=0)
    current = transition(before, after, reason, pause_kind=pause, step_index=1 if moved else 0)
    assert derive_event(current, previous) == expected
    event = event_of(current, "shop", previous=previous)
    assert (event and names([valid(event)])[0]) == (expected and f"rollout.{expected}")


def test_the_fallback_tells_a_pause_from_its_reason_in_trails_before_pause_kind() -> None:
    held = transition("progressing", "paused", "held: not enough evidence")
    passed = transition("progressing", "paused", "step passed; pausing 30s")
    held.pop("pause_kind")
    passed.pop("pause_kind")
    assert (derive_event(held), derive_event(passed)) == ("held", "passed")


def test_the_fallback_tells_a_step_from_a_weight_by_what_moved() -> None:
    first = transition("progressing", "progressing", "x", step_index=0, canary_weight=10)
    moved = transition("progressing", "progressing", "y", step_index=1, canary_weight=25)
    weight = transition("progressing", "progressing", "z", step_index=0, canary_weight=40)
    assert derive_event(moved, first) == "step"
    assert derive_event(weight, first) == "weight"
    assert derive_event(transition("progressing", "progressing", "z"), first) is None


def test_a_hold_carries_the_numbers_of_the_look_that_held() -> None:
    look = decision("held")
    held = transition("progressing", "paused", "held: more evidence needed", pause_kind="held")
    event = valid(event_of(held, "shop", look=look, steps=3))
    numbers = event["data"]["look"]
    stats = look["decision"]["statistics"]
    assert numbers["seq"] == look["seq"]
    assert numbers["canary_requests"] == look["decision"]["input"]["canary"]["requests"] == 300
    assert numbers["stable_requests"] == 1200
    for dimension in ("errors", "latency"):
        assert numbers["needs"][dimension]["remaining"] == stats[dimension]["remaining"]
    waiting = [n["eta_s"] for n in numbers["needs"].values() if n["passed_by"] is None]
    assert numbers["eta_s"] == max(waiting)
    assert isinstance(numbers["eta_s"], float)
    assert numbers["reasons"]
    # without a look in the trail, the hold says so rather than making numbers up
    assert valid(event_of(held, "shop"))["data"]["look"] is None


def test_a_compact_look_gives_what_it_has() -> None:
    # a look recorded compactly (counts only when nothing changed) may lack the input
    look = decision("held")
    look["decision"] = {"engine": "embedded", "output": look["decision"]["output"],
                        "statistics": {"errors": {"remaining": 12, "eta_s": 3}}}  # fmt: skip
    held = transition("progressing", "paused", "held: x", pause_kind="held")
    numbers = valid(event_of(held, "shop", look=look))["data"]["look"]
    assert numbers["canary_requests"] is None
    assert numbers["needs"]["errors"] == {"passed_by": None, "remaining": 12, "eta_s": 3}
    assert numbers["needs"]["latency"]["remaining"] is None


def test_a_hold_after_looks_held_back_carries_the_last_of_them(tmp_path: Path) -> None:
    # Given a rollout's looks: a full hold, two more held back and written as one looks
    # record when the step is held (a transition: the looks go first)
    path = tmp_path / "audit" / "history.jsonl"
    recorder = AuditRecorder(AuditLog(path, 10**7, command=["swiftdeploy", "rollout"]))
    full = a_decision()
    for canary in (300, 305, 310):
        look = json.loads(json.dumps(full))
        for track in (look["input"]["canary"], look["measurements"].get("canary", {})):
            track["requests"] = canary
        recorder.record("decision", decision=look, action="hold", rollout_id="r1", step_index=0)
    recorder.record("transition", rollout_id="r1", phase_before="progressing",
                    phase_after="paused", pause_kind="held", event="held", step_index=0,
                    reason="held: more evidence needed")  # fmt: skip
    kinds = [json.loads(line)["decision"].get("looks") is not None
             for line in path.read_text().splitlines()[:2]]  # fmt: skip
    assert kinds == [False, True]
    # When its events are read, Then the hold carries the last look's numbers
    (held,) = [e for e in read_events(path, "shop") if e["type"].endswith(".held.v1")]
    assert valid(held)["data"]["look"]["canary_requests"] == 310
    assert held["data"]["look"]["seq"] == 2  # the looks record that holds it


def test_a_rollback_says_its_cause_and_an_abort_is_told_apart() -> None:
    cause = "canary errors worse than stable: 5 errors in 118"
    rolling = transition("progressing", "rolling-back", f"rollback: {cause}", canary_weight=0)
    done = transition("rolling-back", "rolled-back", "rolled back", canary_version=None)
    assert valid(event_of(rolling, "shop"))["data"]["reason"] == cause
    assert valid(event_of(done, "shop", previous=rolling))["data"]["reason"] == cause
    aborted = transition("paused", "rolling-back", "rollback: aborted by hand")
    assert names([valid(event_of(aborted, "shop"))]) == ["rollout.aborted"]


def test_a_rolled_back_event_names_the_version_rolled_back_not_the_stable() -> None:
    # Given a rollout of v4 stopped by its pre-rollout hook: the rolled-back record no
    # longer has a canary (the state cleared it)
    projector = Projector("shop", steps=2)
    started = transition("idle", "progressing", "rollout of v4 started", event="started",
                         stable_version="v3", canary_version="v4", canary_weight=0)  # fmt: skip
    refused = hook_record("pre-rollout", step_index=0, step=0, steps=2)
    cause = "pre-rollout hook smoke answered HTTP 500: smoke failed"
    rolling = transition("progressing", "rolling-back", f"rollback: {cause}",
                         event="rolling-back", stable_version="v3", canary_version="v4",
                         canary_weight=0)  # fmt: skip
    done = transition("rolling-back", "rolled-back", "rolled back", event="rolled-back",
                      stable_version="v3", canary_version=None, step_index=None)  # fmt: skip
    # When the records are read in order
    events = [valid(projector.feed(r)) for r in (started, refused, rolling, done)]
    # Then the rolled-back event names v4 and its cause, and the hook event its version
    assert (events[-1]["data"]["canary_version"], events[-1]["data"]["reason"]) == ("v4", cause)
    assert events[1]["data"]["canary_version"] == "v4"
    assert (events[1]["data"]["step"], events[1]["data"]["steps"]) == (0, 2)


def test_the_gate_refusing_and_a_person_forcing_are_events_looks_are_not() -> None:
    refused = valid(event_of(decision("refused", requested="promote"), "shop", steps=3))
    assert names([refused]) == ["gate.refused"]
    assert refused["data"]["requested"] == "promote"
    assert refused["data"]["step"] == 1
    assert refused["data"]["reason"] is None
    forced_by = {"by": "carol", "action": "weight 50", "reason": "hotfix", "against": "rollback",
                 "why": "canary errors worse"}  # fmt: skip
    forced = valid(event_of(decision("forced weight 50", requested="weight 50",
                                     forced=forced_by), "shop"))  # fmt: skip
    assert names([forced]) == ["gate.forced"]
    assert forced["data"] | {"verdict": None} == forced["data"] | {
        "requested": "weight 50", "why": "canary errors worse", "reason": "hotfix",
        "by": "carol", "verdict": None,
    }  # fmt: skip
    for action in ("promote", "hold", "rollback", "held", "promote --all"):
        assert event_of(decision(action), "shop") is None
    assert event_of(record("command"), "shop") is None
    assert event_of(record("chaos", track="canary"), "shop") is None


def test_driver_and_request_records_are_events() -> None:
    restarted = valid(event_of(record("driver", event="restarted", pid=4321), "shop"))
    assert names([restarted]) == ["driver.restarted"]
    assert restarted["data"] == {
        "rollout_id": "r1", "pid": 4321, "restarts": None, "outcome": None, "by": "alice"
    }  # fmt: skip
    exited = record("driver", event="exited", pid=4321, outcome="the rollout ended: promoted")
    assert valid(event_of(exited, "shop"))["data"]["outcome"] == "the rollout ended: promoted"
    refusal = "canary policy refused weight 40"
    asked = record("request", verb="weight", requested_by="dave", reason="more load", weight=40,
                   step_index=1, result="refused", detail=refusal)  # fmt: skip
    request = valid(event_of(asked, "shop"))
    assert names([request]) == ["request.weight"]
    assert request["data"] == {
        "rollout_id": "r1", "verb": "weight", "step": 2, "result": "refused", "weight": 40,
        "reason": "more load", "detail": refusal, "by": "dave",
    }  # fmt: skip
    assert event_of(record("driver", event="sneezed", pid=1), "shop") is None
    assert event_of(record("request", verb="teleport"), "shop") is None


def one_of_each() -> list[dict[str, Any]]:
    """An event of every type this version writes."""
    events = []
    for name in ROLLOUT_EVENTS:
        pause = {"held": "held", "passed": "manual", "paused": "operator"}.get(name)
        made = transition("progressing", "paused", "r", event=name, pause_kind=pause)
        events.append(event_of(made, "shop", look=decision("held"), steps=3))
    events.append(event_of(decision("refused", requested="promote"), "shop"))
    events.append(event_of(decision("forced promote", forced={"by": "x", "reason": "y"}), "shop"))
    events += [event_of(record("driver", event=e, pid=7), "shop")
               for e in ("started", "restarted", "exited")]  # fmt: skip
    events += [event_of(record("request", verb=v, requested_by="x", result="done"), "shop")
               for v in ("promote", "pause", "resume", "abort", "weight")]  # fmt: skip
    events += [event_of(hook_record(kind), "shop") for kind in HOOK_TYPES]
    events.append(event_of(dead_letter(), "shop"))
    return [valid(event) for event in events]


def hook_record(kind: str, **fields: Any) -> dict[str, Any]:
    """A gate hook's call as the engine records it (the design's shape)."""
    values = {"hook": "smoke", "type": kind, "result": "refused", "status": 500,
              "attempts": 3, "elapsed_s": 0.4, "error": None, "answer": {"ok": False},
              "step_index": 1, **fields}  # fmt: skip
    return record("hook", **values)


def dead_letter() -> dict[str, Any]:
    return record("notification", event="dead-letter", sink="oncall", event_id="ab" * 32,
                  event_type="dev.swiftdeploy.rollout.held.v1", attempts=9,
                  error="HTTP 503")  # fmt: skip


def test_hook_calls_and_dead_letters_are_events_without_urls_or_answers() -> None:
    refused = valid(event_of(hook_record("confirm-promotion"), "shop"))
    assert names([refused]) == ["hook.confirm-promotion"]
    assert refused["data"] == {
        "rollout_id": "r1", "hook": "smoke", "result": "refused", "status": 500,
        "attempts": 3, "error": None, "step": 2, "steps": None, "canary_version": None,
        "summary": 'answered HTTP 500: {"ok": false}', "asks": None, "waited_s": 0.4,
    }  # fmt: skip
    failed = valid(event_of(hook_record("pre-rollout", result="failed", status=None,
                                        error="timed out after 2s"), "shop"))  # fmt: skip
    assert (failed["data"]["status"], failed["data"]["error"]) == (None, "timed out after 2s")
    assert event_of(hook_record("teleport"), "shop") is None
    letter = valid(event_of(dead_letter(), "shop"))
    assert names([letter]) == ["notification.dead-letter"]
    assert letter["data"] == {
        "rollout_id": "r1", "sink": "oncall", "event_id": "ab" * 32,
        "event_type": "dev.swiftdeploy.rollout.held.v1", "attempts": 9, "error": "HTTP 503",
    }  # fmt: skip
    assert event_of(record("notification", event="delivered"), "shop") is None


def test_a_gate_asked_again_is_an_event_only_when_its_answer_changes() -> None:
    # Given an approval hook asked every 5 s at step 2: six 403s, then a 200; then the
    # same hook's first answer at step 3 (a new question)
    projector = Projector("shop", steps=3)
    projector.feed(transition("idle", "progressing", "rollout of v4 started", event="started",
                              canary_version="v4"))  # fmt: skip
    start = datetime(2025, 3, 14, 9, 0, tzinfo=UTC)

    def answer(at_s: int, status: int, index: int = 1, asks: int = 1) -> dict[str, Any]:
        ts = (start + timedelta(seconds=at_s)).isoformat(timespec="milliseconds")
        return hook_record("confirm-traffic-increase", hook="approve", status=status,
                           result="ok" if status == 200 else "refused", step_index=index,
                           step=index + 1, steps=3, asks=asks, attempts=1, elapsed_s=1.0,
                           answer={"approved": status == 200},
                           ts=ts.replace("+00:00", "Z"))  # fmt: skip

    calls = [answer(5 * n, 403, asks=n + 1) for n in range(6)]
    calls += [answer(30, 200, asks=7), answer(90, 403, index=2)]
    # When the trail's records are read
    events = [valid(e) for call in calls if (e := projector.feed(call)) is not None]
    # Then the waiting, the approval and the next step's first answer are the events
    said = [(e["data"]["step"], e["data"]["status"], e["data"]["asks"]) for e in events]
    assert said == [(2, 403, 1), (2, 200, 7), (3, 403, 1)]
    approved = events[1]["data"]
    assert approved["waited_s"] == 31.0  # from the first call (1 s before its answer)
    assert approved["summary"] == 'answered HTTP 200: {"approved": true}'
    assert approved["canary_version"] == "v4"


@pytest.mark.parametrize(
    ("pattern", "problem"),
    [
        ("*", None),
        ("rollout.*", None),
        ("rollout.rolled-back", None),
        ("hook.confirm-promotion", None),
        ("notification.dead-letter", None),
        ("rollouts.*", "no event area 'rollouts'"),
        ("rollout.rolledback", "no event 'rollout.rolledback' (the rollout events: started,"),
    ],
)
def test_a_pattern_names_an_area_and_an_event_this_version_writes(
    pattern: str, problem: str | None
) -> None:
    found = pattern_problem(pattern)
    assert found == problem if problem is None else (found or "").startswith(problem)


def test_patterns_pick_events_by_area_and_name() -> None:
    held = "dev.swiftdeploy.rollout.held.v1"
    assert [matches(p, held) for p in ("*", "rollout.*", "rollout.held", "rollout.step")] == [
        True, True, True, False,
    ]  # fmt: skip
    assert not matches("rollout.*", "dev.swiftdeploy.request.abort.v1")
    assert matches("hook.*", "dev.swiftdeploy.hook.confirm-traffic-increase.v1")


def test_every_type_validates_against_the_published_schema() -> None:
    events = one_of_each()
    assert sorted(e["type"] for e in events) == sorted(all_types())
    assert len({e["id"] for e in events}) == len(events)


def _known_fields(definition: dict[str, Any]) -> set[str]:
    """Every data field a definition names, through its $refs and allOf."""
    if "$ref" in definition:
        return _known_fields(SCHEMA["$defs"][definition["$ref"].rsplit("/", 1)[1]])
    known = set(definition.get("properties", {}))
    for part in definition.get("allOf", []):
        known |= _known_fields(part)
    return known


def _data_definition(kind: str) -> dict[str, Any]:
    for rule in SCHEMA["allOf"]:
        condition = rule["if"]["properties"]["type"]
        if kind in condition.get("enum", [condition.get("const")]):
            return rule["then"]["properties"]["data"]
    raise AssertionError(f"the schema says nothing of {kind}")


def test_the_schema_names_every_field_the_code_writes() -> None:
    # The schema allows more fields (consumers ignore what they do not know), so that
    # the code cannot write a field the schema does not describe is checked here.
    for event in one_of_each():
        definition = _data_definition(event["type"])
        assert set(event["data"]) <= _known_fields(definition), event["type"]
        held_look = event["data"].get("look")
        if held_look:
            look_schema = SCHEMA["$defs"]["held"]["properties"]["look"]["oneOf"][1]
            assert set(held_look) == set(look_schema["properties"])


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (("data", "weight"), "25%"),  # numbers are numbers
        (("data", "step"), 0),  # steps count from 1
        (("time",), "2025-03-14 09:00:00"),  # RFC 3339 in UTC
        (("specversion",), "0.3"),
        (("data", "reason"), None),
    ],
)
def test_the_schema_refuses_what_is_not_an_event(path: tuple[str, ...], value: object) -> None:
    event = one_of_each()[1]
    target = event
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    with pytest.raises(ValidationError):
        VALIDATOR.validate(event)


def test_every_type_has_a_valid_example_in_the_docs() -> None:
    text = DOC.read_text()
    examples = [json.loads(block) for block in re.findall(r"```json\n(.*?)```", text, re.S)]
    for example in examples:
        VALIDATOR.validate(example)
    assert {e["type"] for e in examples} >= set(all_types())
    assert SCHEMA_ID in text


# --- since ------------------------------------------------------------------------------


def test_since_reads_a_record_number_a_time_or_a_duration_ago() -> None:
    now = datetime(2025, 3, 14, 9, 0, tzinfo=UTC)
    assert parse_since("120", now) == Since(seq=120)
    assert parse_since("10m", now) == Since(time=now - timedelta(minutes=10))
    assert parse_since("1.5h", now) == Since(time=now - timedelta(minutes=90))
    assert parse_since("2025-03-14T08:00:00Z", now) == Since(time=now - timedelta(hours=1))
    assert parse_since("2025-03-14T10:00:00+02:00", now) == Since(time=now - timedelta(hours=1))
    local = parse_since("2025-03-14T08:00:00", now).time
    assert local == datetime(2025, 3, 14, 8, 0).astimezone(UTC)


@pytest.mark.parametrize("text", ["yesterday", "-5", "10 minutes", "2025-13-01T00:00Z", ""])
def test_a_since_that_is_none_of_them_is_bad_input(text: str) -> None:
    with pytest.raises(BadInputError) as raised:
        parse_since(text)
    assert "--since" in raised.value.one_line()
    assert "10m" in raised.value.one_line()


# --- reading a trail --------------------------------------------------------------------


def test_old_trails_read_through_the_fallback(tmp_path: Path) -> None:
    # Given the trails tests/support/trails.py writes as the CLI did before transitions
    # named their event (nor their pause)
    by_rollout: dict[str, list[str]] = {}
    for write in (write_synthetic_trail, write_awkward_trail):
        path = tmp_path / write.__name__ / "history.jsonl"
        write(path)
        # When their events are read, Then each rollout's changes are there, in order
        for event in read_events(path, "shop", steps=3):
            valid(event)
            by_rollout.setdefault(event["subject"], []).append(names([event])[0])
    rolled_back = ["rollout.started", "rollout.step", "rollout.rolling-back", "rollout.rolled-back"]
    assert by_rollout == {
        PROMOTED: ["rollout.started", "rollout.step", "rollout.step", "rollout.step",
                   "rollout.promoting", "rollout.promoted"],
        ROLLED_BACK: rolled_back,
        BY_HAND: ["rollout.canary", "rollout.step", "rollout.step", "rollout.promoting",
                  "rollout.promoted"],
        NO_LOOK: rolled_back,
        NO_STEP: ["rollout.canary", "rollout.rolling-back", "rollout.rolled-back"],
        NO_DATA: rolled_back,
    }  # fmt: skip


def test_since_and_rollout_pick_events(synthetic: tuple[Path, list[dict[str, Any]]]) -> None:
    path, records = synthetic
    every = list(read_events(path, "shop"))
    middle = every[3]["seq"]
    assert [e["seq"] for e in read_events(path, "shop", since=Since(seq=middle))] == [
        e["seq"] for e in every if e["seq"] > middle
    ]
    later = datetime.fromisoformat(every[-2]["time"])
    assert list(read_events(path, "shop", since=Since(time=later))) == every[-2:]
    only = list(read_events(path, "shop", rollout=ROLLED_BACK))
    assert {e["subject"] for e in only} == {ROLLED_BACK}
    assert len(only) == 4
    assert list(read_events(path.with_name("nothing.jsonl"), "shop")) == []
    assert len(records) > len(every)  # looks and commands are no events


def _log(path: Path, max_bytes: int = 10_000_000) -> AuditLog:
    return AuditLog(path, max_bytes, [], command=["swiftdeploy", "test"])


def _step(log: AuditLog, index: int, **fields: Any) -> None:
    log.append("transition", rollout_id="r1", phase_before="progressing",
               phase_after="progressing", step_index=index, canary_weight=index,
               reason=f"step {index + 1}: canary weight {index}%", **fields)  # fmt: skip


def test_the_reader_walks_rotated_files_in_chain_order(tmp_path: Path) -> None:
    path = tmp_path / "history.jsonl"
    log = _log(path, max_bytes=1500)
    for index in range(12):
        _step(log, index, padding="x" * 200)
    assert len(trail_files(path)) > 3
    steps = [e["data"]["step"] for e in read_events(path, "shop")]
    assert steps == list(range(1, 13))


def test_following_reads_what_is_appended_across_rotation_until_stopped(tmp_path: Path) -> None:
    path = tmp_path / "history.jsonl"
    log = _log(path, max_bytes=1500)
    index = iter(range(1000))
    polls = 0

    def others_write(seconds: float) -> None:
        # What other processes append while the follower sleeps: more every poll, so
        # that the live file is renamed once, then several times, between two polls.
        nonlocal polls
        polls += 1
        for _ in range(polls * 3):
            _step(log, next(index), padding="y" * 300)

    for _ in range(2):
        _step(log, next(index))
    seen = [
        event["data"]["step"]
        for event in read_events(
            path, "shop", follow=True, stop=lambda: polls >= 4, sleep=others_write
        )
    ]
    assert seen == list(range(1, 2 + 3 + 6 + 9 + 12 + 1))
    assert len(trail_files(path)) > 5


def test_following_waits_for_a_trail_that_is_not_there_yet(tmp_path: Path) -> None:
    path = tmp_path / "audit" / "history.jsonl"
    polls = 0

    def later(seconds: float) -> None:
        nonlocal polls
        polls += 1
        if polls == 3:
            _step(_log(path), 0)

    got = list(read_events(path, "shop", follow=True, stop=lambda: polls >= 5, sleep=later))
    assert names(got) == ["rollout.step"]


def test_a_record_is_read_only_once_it_is_whole(tmp_path: Path) -> None:
    path = tmp_path / "history.jsonl"
    _step(_log(path), 0)
    _step(_log(path), 1)
    whole = path.read_bytes()
    cut = whole.index(b"\n") + 1 + 40
    copy = tmp_path / "copy" / "history.jsonl"
    copy.parent.mkdir()
    copy.write_bytes(whole[:cut])  # a writer's line half visible
    tail = TrailTail(copy)
    assert [r["seq"] for r in tail.records()] == [1]
    with copy.open("ab") as handle:
        handle.write(whole[cut:])
    assert [r["seq"] for r in tail.records()] == [2]
    tail.close()


@pytest.mark.parametrize(
    ("change", "says"),
    [
        (lambda line: line.replace(b'"step_index":1', b'"step_index":7'), "does not match"),
        (lambda line: line[:-5], "is not an audit record"),
    ],
)
def test_a_changed_record_stops_the_reader(
    tmp_path: Path, change: Callable[[bytes], bytes], says: str
) -> None:
    path = tmp_path / "history.jsonl"
    log = _log(path)
    for index in range(3):
        _step(log, index)
    lines = path.read_bytes().splitlines(keepends=True)
    lines[1] = change(lines[1].rstrip(b"\n")) + b"\n"
    path.write_bytes(b"".join(lines))
    got: list[dict[str, Any]] = []
    with pytest.raises(AuditTamperedError) as raised:
        got.extend(read_events(path, "shop"))
    assert len(got) == 1  # what came before, and nothing after
    assert says in raised.value.one_line()
    assert f"{path}:2" in raised.value.one_line()


def test_a_record_left_out_breaks_the_chain(tmp_path: Path) -> None:
    path = tmp_path / "history.jsonl"
    log = _log(path)
    for index in range(3):
        _step(log, index)
    lines = path.read_bytes().splitlines(keepends=True)
    path.write_bytes(lines[0] + lines[2])
    with pytest.raises(AuditTamperedError, match="does not follow record 1"):
        list(read_events(path, "shop"))


# --- whole rollouts ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def shipped_policy() -> EmbeddedEngine:
    return EmbeddedEngine(POLICIES)


class Rollout:
    """A simulated world on init's manifest (with `changes`), recording to a real
    AuditLog at the simulation's time, its files rotating every 64 KB."""

    def __init__(self, directory: Path, policy: EmbeddedEngine, total_rps: float,
                 canary: TrackModel | None = None, **changes: object) -> None:  # fmt: skip
        self.world: SimWorld = sim_world(
            init_manifest(directory, **changes),
            total_rps=total_rps,
            stable=TrackModel(),
            canary=canary or TrackModel(),
            seed=7,
        )
        self.path = directory / "audit" / "history.jsonl"
        clock = self.world.clock
        log = AuditLog(self.path, 64_000, [], command=["swiftdeploy", "rollout"],
                       clock=lambda: datetime.fromtimestamp(clock.now, UTC))  # fmt: skip
        self.world.fleet.recorder = AuditRecorder(log)
        self.engine: RolloutEngine = self.world.engine(policy)

    def events(self) -> list[dict[str, Any]]:
        got = list(read_events(self.path, "demo", steps=3))
        for event in got:
            VALIDATOR.validate(event)
        return got

    def changes(self) -> Iterator[dict[str, Any]]:
        """The trail's transitions of rollouts: every state change."""
        for file in trail_files(self.path):
            for line in file.read_text().splitlines():
                found = json.loads(line)
                if found["kind"] == "transition" and found["phase_after"] != "idle":
                    yield found


def assert_each_change_once(rollout: Rollout, events: list[dict[str, Any]]) -> None:
    """One rollout event per state change of the trail, in its order, no id twice."""
    changes = list(rollout.changes())
    mine = [e for e in events if e["type"].startswith("dev.swiftdeploy.rollout.")]
    assert [e["seq"] for e in mine] == [c["seq"] for c in changes]
    assert len({e["id"] for e in events}) == len(events)
    assert [e["seq"] for e in events] == sorted(e["seq"] for e in events)


@pytest.mark.slow
def test_a_promoted_rollout_tells_each_step_once_in_order(
    tmp_path: Path, shipped_policy: EmbeddedEngine
) -> None:
    # Given init's defaults and 500 req/s, a healthy canary
    rollout = Rollout(tmp_path, shipped_policy, 500)
    # When it rolls out
    state = rollout.engine.run(rollout.engine.begin("v2"))
    assert state.phase == Phase.PROMOTED
    # Then its events are the state changes, once each, in order
    events = rollout.events()
    assert names(events) == ["rollout.started", "rollout.step", "rollout.step", "rollout.step",
                             "rollout.promoting", "rollout.promoted"]  # fmt: skip
    steps = [(e["data"]["step"], e["data"]["steps"], e["data"]["weight"]) for e in events[1:4]]
    assert steps == [(1, 3, 10), (2, 3, 25), (3, 3, 50)]
    assert events[-1]["data"]["stable_version"] == "v2"
    assert {e["subject"] for e in events} == {state.rollout_id}
    assert_each_change_once(rollout, events)
    assert len(trail_files(rollout.path)) > 1  # and across rotated files


def test_a_rolled_back_rollout_tells_why(tmp_path: Path, shipped_policy: EmbeddedEngine) -> None:
    rollout = Rollout(tmp_path, shipped_policy, 500, canary=TrackModel(error_rate=0.05))
    state = rollout.engine.run(rollout.engine.begin("v2"))
    assert state.phase == Phase.ROLLED_BACK
    events = rollout.events()
    assert names(events) == ["rollout.started", "rollout.step", "rollout.rolling-back",
                             "rollout.rolled-back"]  # fmt: skip
    for event in events[-2:]:
        assert event["data"]["reason"] == state.message
        assert "canary errors worse than stable" in event["data"]["reason"]
    assert_each_change_once(rollout, events)


def test_a_held_rollout_tells_what_it_needs(tmp_path: Path, shipped_policy: EmbeddedEngine) -> None:
    # Given 10 req/s (1 canary req/s at the first step), undecided at a 2 minute limit
    rollout = Rollout(tmp_path, shipped_policy, 10,
                      **{"strategy.canary.analysis.max_duration": "2m"})  # fmt: skip
    state = rollout.engine.run(rollout.engine.begin("v2"))
    assert (state.phase, state.pause_kind) == (Phase.PAUSED, "held")
    events = rollout.events()
    assert names(events) == ["rollout.started", "rollout.step", "rollout.held"]
    look = events[-1]["data"]["look"]
    assert look["elapsed_s"] >= 120
    assert look["canary_requests"] > 0
    assert look["stable_requests"] > look["canary_requests"]
    assert look["eta_s"] > 0
    assert any(need["remaining"] for need in look["needs"].values())
    assert_each_change_once(rollout, events)


@pytest.mark.slow
def test_a_step_passed_then_aborted(tmp_path: Path, shipped_policy: EmbeddedEngine) -> None:
    # Given a first step that waits for a person once it passes
    steps = [{"weight": 10, "pause": "manual"}, {"weight": 25}, {"weight": 50}]
    rollout = Rollout(tmp_path, shipped_policy, 500, **{"strategy.canary.steps": steps})
    state = rollout.engine.run(rollout.engine.begin("v2"))
    assert (state.phase, state.pause_kind) == (Phase.PAUSED, "manual")
    # When a person aborts it, as the driver does on `swiftdeploy abort`
    rollout.engine.rollback(state, "aborted by hand", aborted=True)
    events = rollout.events()
    assert names(events) == ["rollout.started", "rollout.step", "rollout.passed",
                             "rollout.aborted", "rollout.rolled-back"]  # fmt: skip
    assert events[2]["data"]["pause"] == "manual"
    assert events[-1]["data"]["reason"] == "aborted by hand"
    assert_each_change_once(rollout, events)


def test_a_canary_by_hand_refused_then_forced(
    tmp_path: Path, shipped_policy: EmbeddedEngine
) -> None:
    # Given a canary started by hand that fails half its requests
    rollout = Rollout(tmp_path, shipped_policy, 500, canary=TrackModel(error_rate=0.5))
    engine, clock = rollout.engine, rollout.world.clock
    start_canary(engine, "v2", None)
    clock.sleep(20)
    # When a person asks for more weight, is refused, then forces a promote to the end
    with pytest.raises(PolicyDeniedError):
        set_weight(engine, 20, None)
    set_weight(engine, 5, None)  # down never waits for the gate
    clock.sleep(20)
    promote(engine, to_the_end=True, force_reason="the errors are expected")
    events = rollout.events()
    assert names(events) == ["rollout.canary", "gate.refused", "rollout.weight", "gate.forced",
                             "rollout.step", "rollout.step", "rollout.promoting",
                             "rollout.promoted"]  # fmt: skip
    refused, forced = events[1]["data"], events[3]["data"]
    assert (refused["requested"], refused["verdict"]) == ("weight 20", "rollback")
    assert (forced["requested"], forced["reason"]) == ("promote --all", "the errors are expected")
    assert events[2]["data"]["weight"] == 5
    assert_each_change_once(rollout, events)
