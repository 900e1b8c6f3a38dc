"""rollout.looking: a look's counting and assessing as pure functions."""

from __future__ import annotations

from swiftdeploy.manifest import Policy
from swiftdeploy.metrics.base import Measurement
from swiftdeploy.rollout.looking import counted_look, opened_evidence, step_summary
from swiftdeploy.rollout.statistics import Settings
from swiftdeploy.state.evidence import Counts


def _counted(track: str, requests: int, errors: int, start: float, end: float) -> Measurement:
    return Measurement(
        track=track,
        provider="test",
        status="ok",
        window_start=start,
        window_end=end,
        elapsed_s=end - start,
        requests=requests,
        errors=errors,
        error_rate=errors / requests,
        buckets={"0.1": requests, "+Inf": requests},
    )


def test_a_look_counts_both_tracks_and_a_provider_error_counts_nothing() -> None:
    policy = Policy()
    reference = _counted("stable", 1000, 0, 0.0, 300.0)
    evidence = opened_evidence(reference, [], policy).open_step(0, 10, 300.0)
    evidence = evidence.marked("canary", 300.0).marked("stable", 300.0)
    settings = Settings.of(policy)
    latest = {
        "canary": _counted("canary", 10, 0, 300.0, 310.0),
        "stable": Measurement.provider_error("stable", "test", "down"),
    }
    evidence, statistics = counted_look(evidence, latest, settings)
    step = evidence.current
    assert step is not None
    assert (step.canary.requests, step.stable.requests, step.looks) == (10, 0, 1)
    assert evidence.marks["stable"] == 300.0  # counted from there at the next look
    assert statistics["harm"]["verdict"] == "none"
    summary = step_summary("stable", "test", step.stable, 300.0, 310.0, latest["stable"])
    assert summary.status == "provider_error"
    assert step_summary("canary", "test", Counts(), 300.0, 310.0, None).status == "no_data"
