"""`audit why` names the route drifts of a rollout, before the decision that ended it."""

from __future__ import annotations

from pathlib import Path

from swiftdeploy.audit.report import why

from .conftest import START, Cli, Clock, read


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
