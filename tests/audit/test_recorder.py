"""The fleet's recorder: a rollout's repeated holds are held back and written together,
as one looks record, before anything else is recorded; each gives back exactly the
decision a full record would have held."""

from __future__ import annotations

import itertools
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from bench.support.sim import TrackModel, init_manifest, sim_world

from swiftdeploy.audit.log import AuditLog
from swiftdeploy.audit.looks import expand, is_look, label, same
from swiftdeploy.audit.recorder import FLUSH_S, MAX_LOOKS, AuditRecorder, record_decision
from swiftdeploy.audit.verify import verify
from swiftdeploy.errors import AuditError
from swiftdeploy.policy.base import CANARY
from swiftdeploy.state import Phase
from tests.support.inputs import counts, ledger, policy_input
from tests.support.trails import START, Clock, policy_engine, read

# Fields each log fills in for itself: the rest of a record must be the same in both.
OWN = ("id", "seq", "hash", "prev_hash", "mac", "looks")


class Tee:
    """Records through the fleet's recorder and, as every look was recorded before,
    in full into a second trail."""

    def __init__(self, recorder: AuditRecorder, full: AuditLog) -> None:
        self.recorder = recorder
        self.full = full

    def record(self, kind: str, **fields: Any) -> None:
        self.recorder.record(kind, **fields)
        self.full.append(kind, **fields)

    def flush(self) -> None:
        self.recorder.flush()


@pytest.mark.parametrize("secrets", [(), ("7",), ("A",)], ids=["plain", "secret 7", "secret A"])
def test_a_held_step_is_looks_that_give_back_every_full_decision(
    tmp_path: Path, secrets: tuple[str, ...]
) -> None:
    # Given init's manifest with 60 s per step, a quiet service (its first step holds),
    # and the rollout recorded both ways with the same clock and secrets
    loaded = init_manifest(tmp_path / "project", **{"strategy.canary.analysis.max_duration": "60s"})
    world = sim_world(loaded, total_rps=20, stable=TrackModel(), canary=TrackModel(), seed=3)

    def log(name: str) -> AuditLog:
        clock = lambda: datetime.fromtimestamp(world.clock.now, UTC)  # noqa: E731
        return AuditLog(tmp_path / name / "history.jsonl", 10**8, secrets, clock=clock)

    compact, full = log("compact"), log("full")
    world.fleet.recorder = Tee(AuditRecorder(compact), full)
    engine = world.engine(policy_engine())
    # When the rollout runs until its first step holds at max_duration
    state = engine.run(engine.begin("v2"))
    assert (state.phase, state.pause_kind) == (Phase.PAUSED, "held")
    # Then both trails verify
    assert verify(compact.path).ok
    assert verify(full.path).ok
    written, expected = read(compact.path), read(full.path)
    # And the looks expand to a record for every record, each what its full record says
    got = expand(written)
    assert len(got) == len(expected)
    # (looks written in full are stamped when they are written, not when they were taken)
    own = (*OWN, "ts") if secrets == ("A",) else OWN
    for one, want in zip(got, expected, strict=True):
        assert same(
            {k: v for k, v in one.items() if k not in own},
            {k: v for k, v in want.items() if k not in own},
        ), (label(one), one["kind"])
    decisions = [r for r in written if r["kind"] == "decision"]
    assert decisions[-1]["action"] == "held"
    assert not is_look(decisions[-1])  # anything but a repeated hold is in full
    packed = [r for r in decisions if is_look(r)]
    assert all(r["action"] == "hold" and r["step_index"] == 0 for r in packed)
    assert all(r["rollout_id"] == state.rollout_id for r in packed)
    if secrets == ("A",):  # every packed record would spell it: the looks are in full
        assert not packed
        assert len(written) == len(expected)
    elif not secrets:
        # 10 s of looks a record (a look every 2 s here): under a third of the bytes
        assert len(written) < 0.5 * len(expected)
        assert compact.path.stat().st_size < 0.3 * full.path.stat().st_size


def _hold(recorder: AuditRecorder, canary: int, **fields: Any) -> None:
    """Record one look at an undecided step (by default the engine's hold at step 1)."""
    given = policy_input(ledger(counts(canary, 1), counts(4 * canary, 6)))
    decision = policy_engine().decide(CANARY, given)
    assert decision.verdict == "hold"
    defaults: dict[str, Any] = {"rollout_id": "r1", "step_index": 0, "action": "hold"}
    record_decision(recorder, decision, CANARY, given, {}, given["statistics"],
                    **(defaults | fields))  # fmt: skip


def _recorder(path: Path, clock: Clock | None = None) -> AuditRecorder:
    return AuditRecorder(AuditLog(path, 10**7, clock=clock))


@pytest.mark.parametrize(
    "fields",
    [
        {"action": "held"},
        {"action": "promote --all", "requested": "promote --all"},
        {"step_index": 1},
        {"rollout_id": "r2"},
        {"forced": {"by": "ann"}},
    ],
    ids=str,
)
def test_a_look_with_other_fields_is_a_full_record_after_the_looks_before_it(
    trail_path: Path, fields: dict[str, Any]
) -> None:
    recorder = _recorder(trail_path)
    _hold(recorder, 300)
    _hold(recorder, 305)
    _hold(recorder, 310)
    assert len(read(trail_path)) == 1  # the full hold; its two looks are held back
    _hold(recorder, 320, **fields)
    first, looks, other = read(trail_path)
    # The looks are written first, in one record, then the other hold in full
    assert not is_look(first)
    assert is_look(looks)
    assert looks["decision"]["looks"]["base"] == {"seq": first["seq"], "hash": first["hash"]}
    assert [r["decision"]["input"]["canary"]["requests"] for r in expand([first, looks])] == [
        300, 305, 310]  # fmt: skip
    assert not is_look(other)
    assert {k: other[k] for k in fields} == fields
    _hold(recorder, 330)
    recorder.flush()
    again = read(trail_path)[3]
    if other["action"] == "hold":  # another hold in full is what the next ones refer to
        assert not is_look(again)
    else:  # a gate's look or a hold at max_duration leaves the holds' full record
        assert again["decision"]["looks"]["base"] == {"seq": first["seq"], "hash": first["hash"]}


@pytest.mark.parametrize(
    "record",
    [
        lambda r: r.record("transition", phase_before="progressing", phase_after="paused"),
        lambda r: r.record("command", rollout_id="r1"),
        lambda r: r.record("driver", event="exited", rollout_id="r1"),
        lambda r: r.flush(),
    ],
    ids=["transition", "command", "driver", "flush"],
)
def test_looks_held_back_are_written_before_anything_else(trail_path: Path, record: Any) -> None:
    recorder = _recorder(trail_path)
    for canary in (300, 305, 310):
        _hold(recorder, canary)
    record(recorder)
    kinds = [(r["kind"], is_look(r)) for r in read(trail_path)]
    assert kinds[:2] == [("decision", False), ("decision", True)]
    assert len(kinds) == 2 if record.__name__ == "flush" else 3  # type: ignore[attr-defined]
    recorder.flush()  # nothing more is held
    assert len(read(trail_path)) == len(kinds)


def test_looks_are_written_when_the_first_is_ten_seconds_old(trail_path: Path) -> None:
    clock = Clock(START)
    recorder = _recorder(trail_path, clock)
    _hold(recorder, 300)  # the full record
    for n in range(int(FLUSH_S)):  # looks a second apart: the 11th is 10 s after the first
        clock.tick(1.0)
        _hold(recorder, 305 + n)
        assert len(read(trail_path)) == 1
    clock.tick(1.0)
    _hold(recorder, 400)
    first, looks = read(trail_path)
    got = expand([first, looks])[1:]
    assert len(got) == int(FLUSH_S) + 1
    assert got[0]["ts"] == "2025-03-14T09:00:01.000Z"
    assert got[-1]["ts"] == "2025-03-14T09:00:11.000Z"
    assert [label(r) for r in got[:2]] == ["2.1", "2.2"]
    # a clock that goes back writes what is held at once
    clock.tick(1.0)
    _hold(recorder, 401)
    clock.tick(-5.0)
    _hold(recorder, 402)
    assert len(read(trail_path)) == 3


def test_no_more_than_max_looks_are_held(trail_path: Path) -> None:
    recorder = _recorder(trail_path, Clock(START))  # a clock that stands still
    for n in range(MAX_LOOKS + 1):
        _hold(recorder, 300 + n % 5)
    records = read(trail_path)
    assert [r["decision"].get("looks", {}).get("count") for r in records] == [None, MAX_LOOKS]


def test_looks_that_cannot_be_written_are_kept_and_what_follows_is_not_written(
    trail_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    recorder = _recorder(trail_path)
    _hold(recorder, 300)
    _hold(recorder, 305)
    append = AuditLog.append

    def failing(self: AuditLog, kind: str, **fields: Any) -> dict[str, Any]:
        raise AuditError("the disk is full")

    monkeypatch.setattr(AuditLog, "append", failing)
    with pytest.raises(AuditError):
        recorder.record("transition", phase_before="progressing", phase_after="paused")
    monkeypatch.setattr(AuditLog, "append", append)
    assert len(read(trail_path)) == 1  # neither the look nor the transition
    recorder.record("transition", phase_before="progressing", phase_after="paused")
    assert [r["kind"] for r in expand(read(trail_path))] == ["decision", "decision", "transition"]


def test_each_process_starts_with_a_full_record(trail_path: Path) -> None:
    # A driver restarted carries on in a new process: its first look is in full
    first = _recorder(trail_path)
    _hold(first, 300)
    _hold(first, 305)
    first.flush()
    restarted = _recorder(trail_path)
    _hold(restarted, 310)
    _hold(restarted, 320)
    restarted.flush()
    assert [is_look(r) for r in read(trail_path)] == [False, True, False, True]


def test_a_trail_of_looks_reads_back_in_order_with_times(trail_path: Path) -> None:
    clock = Clock(START)
    recorder = _recorder(trail_path, clock)
    for n in range(5):
        _hold(recorder, 300 + n)
        clock.tick(0.5)
    recorder.flush()
    got = expand(read(trail_path))
    assert [r["decision"]["input"]["canary"]["requests"] for r in got] == list(range(300, 305))
    times = [datetime.fromisoformat(r["ts"].replace("Z", "+00:00")) for r in got]
    assert [b - a for a, b in itertools.pairwise(times)] == [timedelta(seconds=0.5)] * 4
    assert json.loads(json.dumps(got)) == got


def test_a_step_waiting_for_a_confirm_hook_is_looks_not_full_records(tmp_path: Path) -> None:
    # Given a one-step rollout whose confirm-promotion hook keeps answering 403 (on
    # loopback), recorded both ways with the simulated clock
    import time as real_time

    from swiftdeploy.notify.hooks import hook_caller
    from swiftdeploy.notify.secrets import resolve_secrets
    from tests.support.hook_server import hook_server

    with hook_server() as server:
        server.answer("/approve", 403, {"approved": False})
        approve = {"name": "approve", "type": "confirm-promotion", "url": server.url("/approve")}
        loaded = init_manifest(
            tmp_path / "project",
            **{
                "notifications.signing_key": {"env": "K"},
                "hooks": [approve],
                "strategy.canary.steps": [{"weight": 50}],
            },
        )
        world = sim_world(loaded, total_rps=500, stable=TrackModel(), canary=TrackModel(), seed=3)

        def log(name: str) -> AuditLog:
            clock = lambda: datetime.fromtimestamp(world.clock.now, UTC)  # noqa: E731
            return AuditLog(tmp_path / name / "history.jsonl", 10**9, clock=clock)

        compact, full = log("compact"), log("full")
        world.fleet.recorder = Tee(AuditRecorder(compact), full)
        engine = world.engine(policy_engine())
        engine.hooks = hook_caller(loaded, resolve_secrets(loaded, {"K": "k" * 24}))
        state = engine.begin("v2")
        while state.awaiting is None:
            state = engine.tick(state)
            world.clock.sleep(engine.look_interval(state))
        world.fleet.recorder.flush()
        before = len(read(compact.path)), len(read(full.path))
        # When it waits two minutes, a look every 0.25 s, the hook asked every 5 s
        started = world.clock.now
        while world.clock.now - started < 120:
            state = engine.tick(state)
            world.clock.sleep(engine.look_interval(state))
            real_time.sleep(0.005)  # the hook's thread is heard
        engine.close()
    # Then it still waits, both trails verify, and the looks give back every decision
    assert state.awaiting is not None
    assert verify(compact.path).ok
    assert verify(full.path).ok
    written, expected = read(compact.path), read(full.path)
    assert len(expand(written)) == len(expected)
    waited, waited_full = written[before[0] :], expected[before[1] :]
    holds = [r for r in waited_full if r["kind"] == "decision"]
    assert len(holds) > 400
    assert {r["action"] for r in holds} == {"hold"}
    assert {r["decision"]["output"]["verdict"] for r in holds} == {"promote"}
    # and they are folded: a looks record between two answers of the hook, no full
    # record once the first answer is in (503 records, 2.9 MB in full; 47, 194 kB here)
    decisions = [r for r in waited if r["kind"] == "decision"]
    hooks = [r for r in waited if r["kind"] == "hook"]
    assert len([r for r in decisions if not is_look(r)]) <= 2
    assert len(decisions) <= len(hooks) + 3
    size = sum(len(json.dumps(r)) for r in waited)
    assert size < 0.15 * sum(len(json.dumps(r)) for r in waited_full)
