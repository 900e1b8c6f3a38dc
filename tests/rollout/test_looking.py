"""rollout.looking: a look's counting and assessing as pure functions, the same
that the engine's look runs."""

from __future__ import annotations

from swiftdeploy.manifest import Policy
from swiftdeploy.metrics.base import Measurement
from swiftdeploy.rollout.looking import Track, counted_look, opened_evidence, step_summary
from swiftdeploy.rollout.statistics import Settings
from swiftdeploy.state.evidence import Counts
from tests.rollout.conftest import World


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


def test_the_engines_look_is_the_judges_look(world: World) -> None:
    # Given a rollout some looks into its first step, and the readings its looks take
    made, engine = world(500)
    state = engine.begin("v2")
    for _ in range(3):
        state = engine.tick(state)
        made.clock.sleep(1.0)
    read: dict[Track, Measurement | None] = {}
    measure_since = made.provider.measure_since

    def reading(track: str, since: float) -> Measurement:
        measured = measure_since(track, since)
        read[measured.track] = measured  # type: ignore[index]
        return measured

    made.provider.measure_since = reading  # type: ignore[method-assign]
    # When the engine looks
    look = engine.look(state)
    # Then its ledger, statistics and step summaries are the pure functions' on them
    settings = Settings.of(made.fleet.loaded.manifest.policy)
    evidence, statistics = counted_look(state.evidence, read, settings)
    assert look.state.evidence == evidence
    assert look.statistics == statistics
    step = evidence.current
    assert step is not None
    assert state.step_started_at is not None
    now = made.clock.now
    looked: tuple[tuple[Track, Measurement], ...] = (
        ("canary", look.canary),
        ("stable", look.stable),
    )
    for track, summary in looked:
        counts = step.canary if track == "canary" else step.stable
        expected = step_summary(track, "sim", counts, state.step_started_at, now, read[track])
        assert summary == expected
