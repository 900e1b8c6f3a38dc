"""The fleet's recorder: a rollout's repeated holds go to the trail as look records, each
still one record written before anything is done, and each gives back exactly the
decision a full record would have held."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from swiftdeploy.audit.log import AuditLog
from swiftdeploy.audit.looks import expand, is_look, same
from swiftdeploy.audit.recorder import AuditRecorder, record_decision
from swiftdeploy.audit.verify import verify
from swiftdeploy.policy.base import CANARY
from swiftdeploy.state import Phase
from tests.support.inputs import counts, ledger, policy_input
from tests.support.sim import TrackModel, init_manifest, sim_world

from .conftest import policy_engine, read

# Fields each log fills in for itself: the rest of a record must be the same in both.
OWN = ("id", "hash", "prev_hash", "mac", "look")


class Tee:
    """Records through the fleet's recorder and, as every look was recorded before,
    in full into a second trail."""

    def __init__(self, recorder: AuditRecorder, full: AuditLog) -> None:
        self.recorder = recorder
        self.full = full

    def record(self, kind: str, **fields: Any) -> None:
        self.recorder.record(kind, **fields)
        self.full.append(kind, **fields)


@pytest.mark.parametrize("secrets", [(), ("7",)], ids=["plain", "secret 7"])
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
    # Then both trails verify, with a record for every record
    assert verify(compact.path).ok
    assert verify(full.path).ok
    written, expected = read(compact.path), read(full.path)
    assert len(written) == len(expected)
    # And every look gives back exactly what its full record says
    for got, want in zip(expand(written), expected, strict=True):
        assert same(
            {k: v for k, v in got.items() if k not in OWN},
            {k: v for k, v in want.items() if k not in OWN},
        ), (got["seq"], got["kind"])
    decisions = [r for r in written if r["kind"] == "decision"]
    looks = [r for r in decisions if is_look(r)]
    assert decisions[-1]["action"] == "held"
    assert not is_look(decisions[-1])  # anything but a repeated hold is in full
    assert all(r["action"] == "hold" and r["step_index"] == 0 for r in looks)
    assert all(r["rollout_id"] == state.rollout_id for r in looks)
    if not secrets:
        assert len(looks) >= 0.8 * len(decisions)
        size = compact.path.stat().st_size
        assert size < 0.5 * full.path.stat().st_size


def _hold(recorder: AuditRecorder, canary: int, **fields: Any) -> dict[str, Any]:
    """Record one look at an undecided step (by default the engine's hold at step 1)."""
    given = policy_input(ledger(counts(canary, 1), counts(4 * canary, 6)))
    decision = policy_engine().decide(CANARY, given)
    assert decision.verdict == "hold"
    defaults: dict[str, Any] = {"rollout_id": "r1", "step_index": 0, "action": "hold"}
    record_decision(recorder, decision, CANARY, given, {}, given["statistics"],
                    **(defaults | fields))  # fmt: skip
    last: dict[str, Any] = json.loads(recorder.log.path.read_text().splitlines()[-1])
    return last


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
def test_a_look_with_other_fields_is_a_full_record(
    trail_path: Path, fields: dict[str, Any]
) -> None:
    recorder = AuditRecorder(AuditLog(trail_path, 10**7))
    first = _hold(recorder, 300)
    assert not is_look(first)
    assert is_look(_hold(recorder, 310))
    other = _hold(recorder, 320, **fields)
    assert not is_look(other)
    assert {k: other[k] for k in fields} == fields
    again = _hold(recorder, 330)
    if other["action"] == "hold":  # another hold in full is what the next ones refer to
        assert not is_look(again)
    else:  # a gate's look or a hold at max_duration leaves the holds' full record
        assert again["decision"]["look"]["base"] == {"seq": first["seq"], "hash": first["hash"]}


def test_each_process_starts_with_a_full_record(trail_path: Path) -> None:
    # A driver restarted carries on in a new process: its first look is in full
    _hold(AuditRecorder(AuditLog(trail_path, 10**7)), 300)
    restarted = AuditRecorder(AuditLog(trail_path, 10**7))
    assert not is_look(_hold(restarted, 310))
    assert is_look(_hold(restarted, 320))
