"""Bursts of errors or slowness on every replica, the same on both tracks, do not roll
a healthy canary back: the stable's history says the service is bursty before the
canary serves a request, and evidence is counted in bursts (analysis.dispersion)."""

from __future__ import annotations

from swiftdeploy.analysis.dispersion import BLOCK_S
from swiftdeploy.rollout.engine import HISTORY_S
from swiftdeploy.rollout.statistics import Settings, assess
from swiftdeploy.state import Phase
from swiftdeploy.state.evidence import Counts
from tests.rollout.conftest import World
from tests.support.sim import Episodes, TrackModel

BURSTING = TrackModel(0.0, error_bursts=Episodes(share=0.01, duration_s=0.5), burst_error_rate=0.5)


def test_the_stables_history_seeds_its_spread_before_the_canary_starts(world: World) -> None:
    _, engine = world(2000, stable=BURSTING, canary=BURSTING)
    evidence = engine.new_evidence()
    spread = evidence.stable_spread["errors"]
    assert spread.blocks == HISTORY_S / BLOCK_S  # five minutes in blocks of 5 s
    assert spread.events > 0
    # half of a bad replica's 900 requests a second, for half a second: ~225 at once
    assert evidence.dispersion("errors") > 50
    _, quiet = world(2000, seed=8)
    assert quiet.new_evidence().dispersion("errors") < 2  # independent errors: about 1


def test_a_burst_in_the_canarys_first_look_is_one_burst_not_a_regression(world: World) -> None:
    made, engine = world(2000, stable=BURSTING, canary=BURSTING)
    evidence = engine.new_evidence().open_step(0, 10, at=made.clock.now)
    # the canary's replica has a bad half second in its first look: 50 of 200 fail,
    # while the stable's 1,800 served in the same look had no burst
    canary = Counts(requests=200, errors=50, buckets={"0.1": 200, "+Inf": 200})
    stable = Counts(requests=1800, errors=0, buckets={"0.1": 1800, "+Inf": 1800})
    evidence = evidence.counted("canary", _look(canary, made.clock.now, 1.0))
    evidence = evidence.counted("stable", _look(stable, made.clock.now, 1.0))
    settings = Settings.of(made.fleet.loaded.manifest.policy)
    seen = assess(evidence, settings)
    assert seen["harm"]["verdict"] == "none"
    assert seen["errors"]["dispersion"] > 50
    # the same look from a service whose history had no bursts is a regression
    quiet, quiet_engine = world(2000, seed=8)
    naive = quiet_engine.new_evidence().open_step(0, 10, at=quiet.clock.now)
    naive = naive.counted("canary", _look(canary, quiet.clock.now, 1.0))
    naive = naive.counted("stable", _look(stable, quiet.clock.now, 1.0))
    assert assess(naive, settings)["harm"]["verdict"] == "harm"


def test_a_healthy_canary_on_bursting_replicas_is_promoted(world: World) -> None:
    _, engine = world(200, stable=BURSTING, canary=BURSTING, seed=1)
    state = engine.run(engine.begin("v2"))
    assert state.phase == Phase.PROMOTED


class _Look:
    def __init__(self, counts: Counts, start: float, seconds: float) -> None:
        self.requests, self.errors, self.buckets = counts.requests, counts.errors, counts.buckets
        self.window_start, self.window_end = start, start + seconds


def _look(counts: Counts, start: float, seconds: float) -> _Look:
    return _Look(counts, start, seconds)
