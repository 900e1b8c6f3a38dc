"""The explanations (swiftdeploy.review.explain) read straight from real records: trails
written through the real AuditLog and recorder, each look decided by the shipped canary
policy in the embedded engine (tests/support/trails.py), then told back as rollouts,
steps, decisions and sentences."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from swiftdeploy.audit.recorder import record_decision
from swiftdeploy.policy.base import CANARY, INFRASTRUCTURE, fail_closed
from swiftdeploy.review.explain import (
    RULE_TEST,
    TEST_NAMES,
    Rollout,
    decision_of,
    evalue,
    rollouts,
    summary,
    violations,
)
from swiftdeploy.rollout.engine import summarize_reasons
from swiftdeploy.state.evidence import Counts
from tests.support.inputs import counts
from tests.support.trails import PROMOTED, ROLLED_BACK, START, Cli, Clock, read

RID = "r-20250314-1200-v9"
VERSIONS: dict[str, Any] = {"stable": "v8", "canary": "v9"}


def over_500ms(requests: int, very_slow: int) -> Counts:
    """A track's counts: `very_slow` requests over 0.5 s, the rest under 50 ms."""
    fast = requests - very_slow
    return Counts(
        requests=requests,
        errors=0,
        buckets={"0.05": fast, "0.2": fast, "0.5": fast, "+Inf": requests},
    )


def started(path: Path, clock: Clock) -> Cli:
    """`swiftdeploy rollout v9`, in its first step at 10%."""
    cli = Cli(path, clock, "rollout", "v9")
    cli.command(None)
    cli.transition(RID, "idle", "progressing", "rollout of v9 started", **VERSIONS,
                   step_index=0, weight=0)  # fmt: skip
    clock.tick(2.0)
    cli.transition(RID, "progressing", "progressing", "step 1: canary weight 10%", **VERSIONS,
                   step_index=0, weight=10)  # fmt: skip
    clock.tick(10.0)
    return cli


def rolled_back(cli: Cli, clock: Clock, reason: str, before: str = "progressing") -> None:
    cli.transition(RID, before, "rolling-back", f"rollback: {reason}", **VERSIONS,
                   step_index=0, weight=0)  # fmt: skip
    clock.tick(1.0)
    cli.transition(RID, "rolling-back", "rolled-back", "rolled back", stable="v8", canary=None,
                   step_index=None, weight=0)  # fmt: skip


def only(records: list[dict[str, Any]]) -> Rollout:
    (rollout,) = rollouts(records)
    return rollout


def test_a_promoted_rollout_reads_as_its_steps_and_the_looks_that_passed_them(
    synthetic: tuple[Path, list[dict[str, Any]]],
) -> None:
    # Given the trail of a rollout promoted through three steps, then one rolled back
    _, records = synthetic
    # When it is read back
    promoted, rolled = rollouts(records)
    # Then the first is the promoted rollout, its three steps at their weights
    assert (promoted.rollout_id, promoted.outcome, promoted.phase) == (
        PROMOTED, "promoted", "promoted",
    )  # fmt: skip
    assert promoted.versions == "canary v2, stable v1"
    assert [(s.name, len(s.decisions)) for s in promoted.steps] == [
        ("step 1 (10% of traffic)", 4),
        ("step 2 (25% of traffic)", 4),
        ("step 3 (50% of traffic)", 4),
    ]
    # each step held until its last look passed it
    for step in promoted.steps:
        assert [d.action for d in step.decisions] == ["hold", "hold", "hold", "promote"]
    # and the decisive look is the engine's last pass, no command by hand
    decisive = promoted.decisive
    assert decisive is not None
    assert decisive is promoted.steps[-1].last
    assert (decisive.verdict, decisive.outcome, decisive.by_hand) == ("promote", "promote", False)
    assert decisive.sentence().endswith(" → promote")
    assert promoted.manual_command is None
    # it ends at its last transition, not at the next rollout's command under its id
    assert promoted.end < rolled.start
    assert rolled.rollout_id == ROLLED_BACK


def rule_trail(path: Path, canary: Counts, stable: Counts) -> list[dict[str, Any]]:
    clock = Clock(START)
    cli = started(path, clock)
    look = cli.look(RID, canary, stable, elapsed_s=40.0, weight=10)
    assert look.decision.verdict == "rollback", look.decision
    clock.tick(0.5)
    rolled_back(cli, clock, summarize_reasons(look.decision))
    return read(path)


@pytest.mark.parametrize(
    ("rule", "canary", "stable"),
    [
        # the canary fails 5% against the stable's 0.3%: worse than the stable, and
        # above thresholds.max_error_rate
        ("errors_harm", counts(412, 21), counts(1650, 5)),
        # 10% errors on both tracks: no worse than the stable, but over 1%
        ("max_error_rate", counts(400, 40), counts(1600, 160)),
        # 15% of the canary slow (0.2-0.5 s) against 1% of the stable
        ("latency_harm", counts(400, 0, 60), counts(1600, 0, 16)),
        # 10% over 500 ms on both tracks: no slower than the stable, but p99 > 500 ms
        ("max_p99_ms", over_500ms(400, 40), over_500ms(1600, 160)),
    ],
)
def test_a_rollback_reads_as_the_rule_that_carried_the_harm(
    tmp_path: Path, rule: str, canary: Counts, stable: Counts
) -> None:
    # Given a rollout rolled back at its first look by one harm rule
    records = rule_trail(tmp_path / "history.jsonl", canary, stable)
    # When it is read back
    rollout = only(records)
    # Then it was rolled back by the engine's decision, at step 1
    assert (rollout.outcome, rollout.phase) == ("rolled back", "rolled-back")
    assert [s.name for s in rollout.steps] == ["step 1 (10% of traffic)"]
    decisive = rollout.decisive
    assert decisive is not None
    assert (decisive.verdict, decisive.action, decisive.step_index) == ("rollback", "rollback", 0)
    assert rollout.manual_command is None
    # with the harm rule among its reasons, said in the policy's words, harm first
    rules = [r.rule for r in decisive.ordered_reasons()]
    assert rules[0] in RULE_TEST
    assert rule in rules
    reason = next(r for r in decisive.reasons if r.rule == rule)
    assert decisive.reason_sentence(reason) == reason.message
    said = "; ".join(r.message for r in decisive.ordered_reasons())
    assert decisive.sentence() == f"{said} → rollback"
    # the rule's numbers: an e-value against alpha
    assert reason.facts() == f"rule {rule}: e-value {evalue(reason.observed)}, alpha 0.01"
    assert reason.observed >= 100  # 1/alpha
    # the statistics behind it, led by the evidence of harm, with the counts of its test
    lines = decisive.statistics_lines()
    assert lines[0].startswith("evidence of harm ")
    assert lines[0].endswith(">= 100 = 1/alpha")
    test = TEST_NAMES[RULE_TEST[rule]]
    (line,) = [text for text in lines if text.startswith(f"{test}: e = ")]
    assert line.endswith("carries the evidence of harm")
    assert f" in {canary.requests:.0f}" in line
    # and the violation lists name the decision with it
    assert (decisive, reason) in violations(records)


def test_an_engine_that_could_not_decide_reads_as_failing_closed(tmp_path: Path) -> None:
    # Given a look the policy engine could not make (OPA unreachable), and an
    # infrastructure gate it could not make either, as the engine and gate record them
    path = tmp_path / "history.jsonl"
    clock = Clock(START)
    cli = started(path, clock)
    given: dict[str, Any] = {"thresholds": {}, "step": {"index": 0, "weight": 10}}
    message = "OPA at http://127.0.0.1:8181 did not answer"
    for package, action in ((CANARY, "hold"), (INFRASTRUCTURE, "denied")):
        decision = fail_closed(package, engine="opa", rule="engine_unreachable", message=message)
        record_decision(cli.recorder, decision, package, given | {"action": "rollout"}, {}, {},
                        rollout_id=RID, step_index=0, action=action)  # fmt: skip
        clock.tick(1.0)
    records = read(path)
    # When they are read back
    looked, gated = [d for r in records if (d := decision_of(r)) is not None]
    # Then each says the engine failed closed, and why
    for view in (looked, gated):
        assert view.failed
        assert view.engine == "opa"
        (reason,) = view.reasons
        assert view.reason_sentence(reason) == (
            f"the policy engine could not decide (engine_unreachable), so it failed closed: "
            f"{message}"
        )
    # the canary gate held; the infrastructure gate denied the command it was asked for
    assert looked.sentence().endswith(" → hold")
    assert gated.outcome == "rollback, so rollout denied"
    # and both are violations, though neither verdict of the canary gate was a rollback
    assert [(d.package, r.rule) for d, r in violations(records)] == [
        (CANARY, "engine_unreachable"),
        (INFRASTRUCTURE, "engine_unreachable"),
    ]


def held_trail(path: Path) -> tuple[Clock, Cli]:
    clock = Clock(START)
    cli = started(path, clock)
    for n in range(1, 4):
        clock.tick(200.0)
        action = "held" if n == 3 else None  # the third look is at max_duration
        look = cli.look(RID, counts(40 * n), counts(360 * n, 3 * n), elapsed_s=200.0 * n,
                        weight=10, action=action)  # fmt: skip
        assert look.decision.verdict == "hold", look.decision
    cli.recorder.flush()
    cli.transition(RID, "progressing", "paused", "held: more evidence needed", **VERSIONS,
                   step_index=0, weight=10)  # fmt: skip
    return clock, cli


def test_a_step_held_at_max_duration_reads_as_held_for_a_person(tmp_path: Path) -> None:
    # Given a step that held undecided until its max_duration, then paused for a person
    path = tmp_path / "history.jsonl"
    held_trail(path)
    records = read(path)
    # When it is read back
    rollout = only(records)
    # Then the rollout is still in progress, paused at its step
    assert (rollout.outcome, rollout.phase) == ("in progress", "paused")
    assert rollout.manual_command is None
    # its holds are looks of one step, the last one held for a person
    (step,) = rollout.steps
    assert [d.action for d in step.decisions] == ["hold", "hold", "held"]
    decisive = rollout.decisive
    assert decisive is step.last
    assert decisive is not None
    assert decisive.outcome == "hold at max_duration, so held for a person"
    # and its reason says what evidence is still missing
    assert next(r.rule for r in decisive.ordered_reasons()) == "needs_evidence"
    assert decisive.sentence().endswith(" → hold at max_duration, so held for a person")
    # the timeline says the transition in its phases and weight
    assert summary(records[-1]) == (
        "progressing → paused, step 1, canary weight 10%: held: more evidence needed"
    )


def test_an_aborted_rollout_reads_as_rolled_back_by_the_command(tmp_path: Path) -> None:
    # Given a held rollout that a person aborted
    path = tmp_path / "history.jsonl"
    clock, _ = held_trail(path)
    clock.tick(30.0)
    abort = Cli(path, clock, "abort")
    abort.command(RID)
    rolled_back(abort, clock, "aborted by hand", before="paused")
    records = read(path)
    # When it is read back
    rollout = only(records)
    # Then it was rolled back, by no decision of the engine but by the command
    assert (rollout.outcome, rollout.phase) == ("rolled back", "rolled-back")
    assert rollout.decisive is None
    command = rollout.manual_command
    assert command is not None
    assert command["command"][1:] == ["abort"]
    assert summary(command) == "$ swiftdeploy abort"
    # the engine's looks are still its decisions, none of them a violation
    assert [d.action for d in rollout.decisions] == ["hold", "hold", "held"]
    assert violations(records) == []


def test_a_judges_trail_reads_as_its_answers(tmp_path: Path) -> None:
    # Given a judge's trail (`swiftdeploy judge serve`): answers to a controller's
    # analysis under its key, no transitions, as judge/service.py records them
    path = tmp_path / "history.jsonl"
    clock = Clock(START)
    judge = Cli(path, clock, "judge", "serve")
    key = "argo/shop/cart/2"
    fields = {"analysis": key, "controller": "argo", "caller": "127.0.0.1",
              "stable_version": "v1", "canary_version": "v2"}  # fmt: skip
    for n, (canary, stable) in enumerate(
        [(counts(100), counts(400, 2)), (counts(412, 21), counts(1650, 5))], start=1
    ):
        clock.tick(30.0)
        judge.look(key, canary, stable, elapsed_s=30.0 * n, weight=20, look=n, **fields)
    records = read(path)
    # When it is read back
    rollout = only(records)
    # Then it is one analysis, in progress for ever (the judge never learns the end),
    # whose decisions are the judge's answers: a hold, then a rollback
    assert (rollout.rollout_id, rollout.phase, rollout.outcome) == (key, None, "in progress")
    assert rollout.versions == "canary v2, stable v1"
    assert [(d.verdict, d.action, d.by_hand) for d in rollout.decisions] == [
        ("hold", "hold", False),
        ("rollback", "rollback", False),
    ]
    decisive = rollout.decisive
    assert decisive is rollout.decisions[-1]
    assert decisive is not None
    assert decisive.record["controller"] == "argo"
    assert [r.rule for r in decisive.ordered_reasons()][:1] == ["errors_harm"]
    assert rollout.end == decisive.at
