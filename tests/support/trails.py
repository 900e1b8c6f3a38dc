"""Audit trails as the CLI writes them, with a fake clock, for the trail's tests
(tests/audit) and its review's (tests/review), whose conftests import the fixtures below.

Every record goes through the real AuditLog (real hashes), one log per CLI invocation
with its argv, through the fleet's real recorder (audit/recorder.py::AuditRecorder).
Every decision is a real one: a hand-written evidence ledger, the policy input the
engine builds from it (tests/support/inputs.py), the shipped canary policy in the
embedded engine, written by audit.recorder.record_decision with Measurement dumps as the
rollout engine writes them. So these tests read exactly what a real rollout leaves.

- `write_synthetic_trail`: one rollout promoted through three steps, holding before
  each pass; one held a few looks, then rolled back after chaos on its errors.
- `write_awkward_trail`: the cases a report must not draw wrong: a canary promoted
  by hand (`promote --all` runs two steps within a second), rollouts rolled back
  before any look or any step, and one whose looks measured nothing.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from swiftdeploy.audit.log import AuditLog
from swiftdeploy.audit.recorder import AuditRecorder, record_decision
from swiftdeploy.policy.base import CANARY, Decision
from swiftdeploy.policy.embedded import EmbeddedEngine
from swiftdeploy.rollout.engine import summarize_reasons
from swiftdeploy.rollout.statistics import passed_dimensions
from swiftdeploy.state.evidence import Counts, Dimension, PassedBy, StepLedger
from tests.support.inputs import counts, ledger, policy_input, step_measurement

POLICIES = Path(__file__).resolve().parents[2] / "policies"
START = datetime(2025, 3, 14, 9, 0, 0, tzinfo=UTC)
PROMOTED = "r-20250314-0900-v2"
ROLLED_BACK = "r-20250314-0930-v3"
STEPS = (10, 25, 50)  # the weights of `swiftdeploy init`'s manifest
LOOK_S = 8.0  # between looks; min_duration is 30 s (the default), so the 4th look passes
# The rolled-back rollout: the stable fails 1% of requests; the canary none, until
# chaos makes it fail 30%. The rollback look then counts 16 errors in 200 canary
# requests, enough for both the errors and the error-rate test to carry the harm.
ROLLBACK_CANARY = (200, 16)
ROLLBACK_STABLE = (1800, 18)
# How the reasons and statistics quote those counts.
CANARY_SAYS = f"{ROLLBACK_CANARY[1]} errors in {ROLLBACK_CANARY[0]}"
STABLE_SAYS = f"{ROLLBACK_STABLE[1]} in {ROLLBACK_STABLE[0]}"
# The awkward trail's rollouts.
BY_HAND = "r-20250314-1000-v4"
NO_LOOK = "r-20250314-1030-v5"
NO_STEP = "r-20250314-1100-v6"
NO_DATA = "r-20250314-1130-v7"


class Clock:
    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def tick(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@cache
def policy_engine() -> EmbeddedEngine:
    return EmbeddedEngine(POLICIES)


class Cli:
    """One `swiftdeploy` invocation: its audit log (every record carries its argv) and
    the recorder the fleet writes through."""

    def __init__(self, path: Path, clock: Clock, *argv: str) -> None:
        log = AuditLog(path, 10_000_000, [], command=["swiftdeploy", *argv], clock=clock)
        self.recorder = AuditRecorder(log)

    def command(self, rollout_id: str | None) -> None:
        """What `_locked_fleet` records first: the rollout id the state had before."""
        self.recorder.record("command", rollout_id=rollout_id)

    def transition(
        self,
        rollout_id: str,
        before: str,
        after: str,
        reason: str,
        *,
        stable: str | None,
        canary: str | None,
        step_index: int | None,
        weight: int,
    ) -> None:
        """The fields of fleet.Fleet.transition."""
        self.recorder.record(
            "transition",
            rollout_id=rollout_id,
            phase_before=before,
            phase_after=after,
            stable_version=stable,
            canary_version=canary,
            step_index=step_index,
            canary_weight=weight,
            reason=reason,
        )

    def look(
        self,
        rollout_id: str,
        canary: Counts,
        stable: Counts,
        *,
        elapsed_s: float,
        weight: int,
        passed: Mapping[Dimension, PassedBy] | None = None,
        earlier: tuple[StepLedger, ...] = (),
        action: str | None = None,
        **fields: Any,
    ) -> Look:
        """One look at the current step, recorded as rollout/engine.py records it (the
        action defaults to the verdict)."""
        evidence = ledger(
            canary,
            stable,
            weight=weight,
            elapsed_s=elapsed_s,
            passed=dict(passed or {}),
            earlier=earlier,
        )
        given = policy_input(evidence, elapsed_s=elapsed_s)
        decision = policy_engine().decide(CANARY, given)
        step = evidence.current
        assert step is not None
        record_decision(
            self.recorder,
            decision,
            CANARY,
            given,
            {
                "canary": measurement("canary", canary, elapsed_s),
                "stable": measurement("stable", stable, elapsed_s),
            },
            given["statistics"],
            rollout_id=rollout_id,
            step_index=step.index,
            action=action or decision.verdict,
            **fields,
        )
        # The ledger keeps how each dimension passed, as the engine does after a look.
        passed_now = passed_dimensions(given["statistics"])
        return Look(decision, step.model_copy(update={"passed": passed_now}), passed_now)

    def chaos(self, rollout_id: str, **fields: Any) -> None:
        """The fields of commands/chaos.py (0 for the effect not asked for)."""
        self.recorder.record("chaos", rollout_id=rollout_id, **fields)


class Look:
    def __init__(
        self, decision: Decision, step: StepLedger, passed: dict[Dimension, PassedBy]
    ) -> None:
        self.decision = decision
        self.step = step  # the ledger's step after the look
        self.passed = passed


def measurement(track: str, track_counts: Counts, elapsed_s: float) -> dict[str, Any]:
    """A Measurement dump of the step so far, as RolloutEngine.record writes it."""
    return step_measurement(track, track_counts, elapsed_s).model_dump(mode="json")


def _promoted_rollout(path: Path, clock: Clock) -> None:
    """`swiftdeploy rollout v2`: three steps, each holding until it passes."""
    rid, cli = PROMOTED, Cli(path, clock, "rollout", "v2")
    versions = {"stable": "v1", "canary": "v2"}
    cli.command(None)
    cli.transition(rid, "idle", "progressing", "rollout of v2 started", **versions,
                   step_index=0, weight=0)  # fmt: skip
    clock.tick(3.0)  # the canary's replicas start
    earlier: tuple[StepLedger, ...] = ()
    for index, weight in enumerate(STEPS):
        cli.transition(rid, "progressing", "progressing",
                       f"step {index + 1}: canary weight {weight}%", **versions,
                       step_index=index, weight=weight)  # fmt: skip
        passed: dict[Dimension, PassedBy] = {}
        for n in range(1, 5):
            clock.tick(LOOK_S)
            canary_n = 6 * weight * n * int(LOOK_S)  # 600 requests/s in all
            stable_n = 600 * n * int(LOOK_S) - canary_n
            look = cli.look(
                rid,
                counts(canary_n, canary_n // 500, canary_n // 200),
                counts(stable_n, stable_n // 500, stable_n // 150),
                elapsed_s=LOOK_S * n,
                weight=weight,
                passed=passed,
                earlier=earlier,
            )
            passed = look.passed
            if look.decision.verdict == "promote":
                earlier = (*earlier, look.step)
                break
        assert look.decision.verdict == "promote", look.decision
    cli.transition(rid, "progressing", "promoting", "promoting v2 to stable", **versions,
                   step_index=len(STEPS) - 1, weight=100)  # fmt: skip
    clock.tick(4.0)
    cli.transition(rid, "promoting", "promoted", "v2 promoted", stable="v2", canary=None,
                   step_index=None, weight=0)  # fmt: skip


def _rolled_back_rollout(path: Path, clock: Clock) -> None:
    """`swiftdeploy rollout v3`: holds at step 1 until chaos on the canary's errors."""
    rid, cli = ROLLED_BACK, Cli(path, clock, "rollout", "v3")
    versions = {"stable": "v2", "canary": "v3"}
    clock.tick(600)
    cli.command(PROMOTED)  # the state still had the last rollout's id
    cli.transition(rid, "promoted", "progressing", "rollout of v3 started", **versions,
                   step_index=0, weight=0)  # fmt: skip
    clock.tick(3.0)
    cli.transition(rid, "progressing", "progressing", "step 1: canary weight 10%", **versions,
                   step_index=0, weight=10)  # fmt: skip
    for n in range(1, 5):
        clock.tick(2.0)
        look = cli.look(rid, counts(40 * n), counts(360 * n, 3 * n), elapsed_s=2.0 * n, weight=10)
        assert look.decision.verdict == "hold", look.decision
    clock.tick(1.0)
    chaos = Cli(path, clock, "chaos", "--error-rate", "0.3", "--duration-s", "60")
    chaos.chaos(rid, track="canary", error_rate=0.3, latency_ms=0.0, duration_s=60.0,
                recover=False)  # fmt: skip
    clock.tick(1.0)
    look = cli.look(
        rid, counts(*ROLLBACK_CANARY), counts(*ROLLBACK_STABLE), elapsed_s=10.0, weight=10
    )
    assert look.decision.verdict == "rollback", look.decision
    reason = summarize_reasons(look.decision)
    cli.transition(rid, "progressing", "rolling-back", f"rollback: {reason}", **versions,
                   step_index=0, weight=0)  # fmt: skip
    clock.tick(1.5)
    cli.transition(rid, "rolling-back", "rolled-back", "rolled back", stable="v2", canary=None,
                   step_index=None, weight=0)  # fmt: skip


def read(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def write_synthetic_trail(path: Path) -> list[dict[str, Any]]:
    clock = Clock(START)
    _promoted_rollout(path, clock)
    _rolled_back_rollout(path, clock)
    return read(path)


# --- the awkward cases -----------------------------------------------------------------


def _promoted_by_hand(path: Path, clock: Clock) -> None:
    """`canary v4` (its weight is set without a transition of its own), then
    `promote --all`: one gate look, two steps and the promotion within a second."""
    rid, versions = BY_HAND, {"stable": "v3", "canary": "v4"}
    start = Cli(path, clock, "canary", "v4")
    start.command(ROLLED_BACK)
    start.transition(rid, "rolled-back", "progressing", "canary v4 started by hand", **versions,
                     step_index=0, weight=0)  # fmt: skip
    clock.tick(20.0)
    promote = Cli(path, clock, "promote", "--all")
    promote.command(rid)
    look = promote.look(rid, counts(400, 1), counts(3600, 7), elapsed_s=20.0, weight=10,
                        action="promote --all", requested="promote --all")  # fmt: skip
    assert look.decision.verdict == "hold", look.decision
    for index, weight in enumerate(STEPS[1:], start=1):
        clock.tick(0.05)
        promote.transition(rid, "progressing", "progressing",
                           f"promoted by hand to step {index + 1}", **versions,
                           step_index=index, weight=weight)  # fmt: skip
    clock.tick(0.05)
    promote.transition(rid, "progressing", "promoting", "promoting v4 to stable", **versions,
                       step_index=len(STEPS) - 1, weight=100)  # fmt: skip
    clock.tick(3.0)
    promote.transition(rid, "promoting", "promoted", "v4 promoted", stable="v4", canary=None,
                       step_index=None, weight=0)  # fmt: skip


def _rollback_by_hand(path: Path, clock: Clock, rid: str, stable: str) -> None:
    clock.tick(1.0)
    rollback = Cli(path, clock, "rollback")
    rollback.command(rid)
    rollback.transition(rid, "progressing", "rolling-back", "rollback: rolled back by hand",
                        stable=stable, canary=None, step_index=0, weight=0)  # fmt: skip
    clock.tick(1.0)
    rollback.transition(rid, "rolling-back", "rolled-back", "rolled back", stable=stable,
                        canary=None, step_index=None, weight=0)  # fmt: skip


def _rolled_back_before_any_look(path: Path, clock: Clock) -> None:
    """`rollout v5` enters step 1, and a person rolls it back before the first look."""
    rid, versions = NO_LOOK, {"stable": "v4", "canary": "v5"}
    cli = Cli(path, clock, "rollout", "v5")
    clock.tick(600)
    cli.command(BY_HAND)
    cli.transition(rid, "promoted", "progressing", "rollout of v5 started", **versions,
                   step_index=0, weight=0)  # fmt: skip
    clock.tick(2.0)
    cli.transition(rid, "progressing", "progressing", "step 1: canary weight 10%", **versions,
                   step_index=0, weight=10)  # fmt: skip
    _rollback_by_hand(path, clock, rid, "v4")


def _rolled_back_before_any_step(path: Path, clock: Clock) -> None:
    """`canary v6` by hand, rolled back at once: no record gives it a weight."""
    rid = NO_STEP
    cli = Cli(path, clock, "canary", "v6")
    clock.tick(600)
    cli.command(NO_LOOK)
    cli.transition(rid, "rolled-back", "progressing", "canary v6 started by hand", stable="v4",
                   canary="v6", step_index=0, weight=0)  # fmt: skip
    _rollback_by_hand(path, clock, rid, "v4")


def _looks_without_measurements(path: Path, clock: Clock) -> None:
    """`rollout v7` while no requests reach the service: every look has no data."""
    rid, versions = NO_DATA, {"stable": "v4", "canary": "v7"}
    cli = Cli(path, clock, "rollout", "v7")
    clock.tick(600)
    cli.command(NO_STEP)
    cli.transition(rid, "rolled-back", "progressing", "rollout of v7 started", **versions,
                   step_index=0, weight=0)  # fmt: skip
    cli.transition(rid, "progressing", "progressing", "step 1: canary weight 10%", **versions,
                   step_index=0, weight=10)  # fmt: skip
    for n in range(1, 4):
        clock.tick(10.0)
        look = cli.look(rid, counts(0), counts(0), elapsed_s=10.0 * n, weight=10)
        assert look.decision.verdict == "hold", look.decision
    _rollback_by_hand(path, clock, rid, "v4")


def write_awkward_trail(path: Path) -> list[dict[str, Any]]:
    clock = Clock(START)
    _promoted_by_hand(path, clock)
    _rolled_back_before_any_look(path, clock)
    _rolled_back_before_any_step(path, clock)
    _looks_without_measurements(path, clock)
    return read(path)


def a_decision() -> dict[str, Any]:
    """The `decision` field of a real decision record (an undecided look)."""
    captured: dict[str, Any] = {}

    class Capture:
        def record(self, kind: str, **fields: Any) -> None:
            captured.update(fields)

    given = policy_input(ledger(counts(300, 1), counts(1200, 6)))
    decision = policy_engine().decide(CANARY, given)
    record_decision(Capture(), decision, CANARY, given, {}, given["statistics"])
    return dict(captured["decision"])


@pytest.fixture(autouse=True)
def audit_keys(fresh_audit_keys: Path) -> Path:
    """Every audit test's keys in a directory of its own."""
    return fresh_audit_keys


def write_trail(path: Path, count: int, **fields: Any) -> Path:
    """A trail of `count` command records, as one CLI run writes them."""
    log = AuditLog(path, 10_000_000, [], command=["swiftdeploy", "test"])
    for i in range(count):
        log.append("command", n=i, **fields)
    return path


def trail_lines(path: Path) -> list[str]:
    return path.read_text().splitlines()


def write_lines(path: Path, lines: list[str]) -> None:
    path.write_text("".join(line + "\n" for line in lines))


@pytest.fixture
def trail_path(tmp_path: Path) -> Path:
    return tmp_path / "state" / "history.jsonl"


@pytest.fixture
def synthetic(tmp_path: Path) -> tuple[Path, list[dict[str, Any]]]:
    path = tmp_path / "state" / "history.jsonl"
    return path, write_synthetic_trail(path)


@pytest.fixture
def awkward(tmp_path: Path) -> tuple[Path, list[dict[str, Any]]]:
    path = tmp_path / "state" / "history.jsonl"
    return path, write_awkward_trail(path)
