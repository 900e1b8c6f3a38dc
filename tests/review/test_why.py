"""`audit why` names the route drifts of a rollout, before the decision that ended it;
what ended a rollout no policy decision ended; and the gating hooks it waited for."""

from __future__ import annotations

from pathlib import Path

from swiftdeploy.durations import format_duration
from swiftdeploy.review.report import why
from tests.support.inputs import counts
from tests.support.trails import START, Cli, Clock, read


def test_why_names_each_drift_of_the_split(trail_path: Path) -> None:
    clock = Clock(START)
    cli = Cli(trail_path, clock, "rollout", "v2")
    cli.transition("r-d", "idle", "progressing", "rollout of v2 started", stable="v1",
                   canary="v2", step_index=0, weight=20)  # fmt: skip
    clock.tick(5)
    cli.recorder.record(
        "transition",
        event="drift",
        rollout_id="r-d",
        phase_before="progressing",
        phase_after="progressing",
        stable_version="v1",
        canary_version="v2",
        step_index=0,
        canary_weight=20,
        reason="route drift: HTTPRoute t/demo was missing; restored to 80/20 (stable/canary); "
        "the step's evidence starts again",
    )
    cli.recorder.flush()
    lines = why(read(trail_path))
    assert lines[1] == (
        "2025-03-14T09:00:05.000Z: route drift: HTTPRoute t/demo was missing; restored to "
        "80/20 (stable/canary); the step's evidence starts again"
    )


def hook(cli: Cli, rid: str, kind: str, status: int, index: int, answer: object) -> None:
    """A gating hook's answer as the engine records it (notify/hooks.py)."""
    cli.recorder.record(
        "hook", rollout_id=rid, step_index=index, step=0 if kind == "pre-rollout" else index + 1,
        steps=1, asks=1, hook="smoke" if kind == "pre-rollout" else "approve", type=kind,
        result="ok" if status < 300 else "refused", status=status, attempts=1, elapsed_s=1.0,
        error=None, answer=answer,
    )  # fmt: skip


def test_a_rollout_a_pre_rollout_hook_stopped_says_the_hook_and_its_answer(
    trail_path: Path,
) -> None:
    # Given v4 stopped by its pre-rollout hook smoke answering 500, no look ever made
    clock = Clock(START)
    cli = Cli(trail_path, clock, "rollout", "v4")
    versions = {"stable": "v3", "canary": "v4"}
    cli.transition("r-h", "idle", "progressing", "rollout of v4 started", **versions,
                   step_index=0, weight=0)  # fmt: skip
    clock.tick(2)
    hook(cli, "r-h", "pre-rollout", 500, 0, "smoke failed: 3 of 10 checks")
    cause = "pre-rollout hook smoke answered HTTP 500: smoke failed: 3 of 10 checks"
    cli.transition("r-h", "progressing", "rolling-back", f"rollback: {cause}", **versions,
                   step_index=0, weight=0)  # fmt: skip
    cli.recorder.flush()
    # When `audit why` reads it while it rolls back
    rolling = why(read(trail_path))
    # Then it says the rollback's cause, without "in progress" or "no decision" noise
    assert rolling[0].startswith("rollout r-h (canary v4, stable v3) is being rolled back")
    assert rolling[1] == f"rolled back 2 s into the rollout: {cause}"
    # When it has rolled back
    clock.tick(1)
    cli.transition("r-h", "rolling-back", "rolled-back", "rolled back", stable="v3",
                   canary=None, step_index=None, weight=0)  # fmt: skip
    cli.recorder.flush()
    lines = why(read(trail_path))
    # Then the headline names v4, and the lines the cause and the hook's record
    assert lines[0].startswith("rollout r-h (canary v4, stable v3) was rolled back at ")
    assert lines[1:] == [
        f"rolled back 2 s into the rollout: {cause}",
        "hook smoke (pre-rollout) answered HTTP 500: smoke failed: 3 of 10 checks before "
        "step 1, 2 s into the rollout",
    ]
    assert "no policy decision" not in "\n".join(lines)


def test_a_promotion_that_waited_for_an_approval_says_so(trail_path: Path) -> None:
    # Given a one-step rollout whose step passed, then waited 10 minutes for hook
    # approve (confirm-promotion): 403 every 5 s, then 200
    clock = Clock(START)
    cli = Cli(trail_path, clock, "rollout", "v2")
    versions = {"stable": "v1", "canary": "v2"}
    cli.transition("r-a", "idle", "progressing", "rollout of v2 started", **versions,
                   step_index=0, weight=0)  # fmt: skip
    cli.transition("r-a", "progressing", "progressing", "step 1: canary weight 50%",
                   **versions, step_index=0, weight=50)  # fmt: skip
    for n in range(1, 6):
        clock.tick(8)
        look = cli.look("r-a", counts(2400 * n, 2 * n, 5 * n), counts(2400 * n, 2 * n, 6 * n),
                        elapsed_s=8.0 * n, weight=50)  # fmt: skip
        if look.decision.verdict == "promote":
            break
    assert look.decision.verdict == "promote"
    for _ in range(120):
        clock.tick(5)
        hook(cli, "r-a", "confirm-promotion", 403, 0, {"approved": False})
    clock.tick(5)
    hook(cli, "r-a", "confirm-promotion", 200, 0, {"approved": True})
    cli.transition("r-a", "progressing", "promoting", "promoting v2 to stable", **versions,
                   step_index=0, weight=100)  # fmt: skip
    cli.transition("r-a", "promoting", "promoted", "v2 promoted", stable="v2", canary=None,
                   step_index=None, weight=0)  # fmt: skip
    cli.recorder.flush()
    # When `audit why` reads it
    lines = why(read(trail_path))
    # Then right after the decision that passed the step, the approval and the wait
    decided = next(i for i, line in enumerate(lines) if line.startswith("decision "))
    assert lines[decided + 1] == (
        'approved: hook approve (confirm-promotion) answered HTTP 200: {"approved": true} '
        f"after step 1 passed, {format_duration(lines_offset(lines[decided]) + 605)} into the "
        "rollout, "
        "after waiting 10 min (HTTP 403 x 120 before)"
    )


def lines_offset(line: str) -> float:
    """The seconds into the rollout a `decision ...` line of `why` names."""
    return float(line.split(" s into the rollout", maxsplit=1)[0].rsplit(" ", 1)[1])
