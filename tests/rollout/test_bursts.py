"""Bursts of errors or slowness on every replica, the same on both tracks, do not roll
a healthy canary back: the stable's history says the service is bursty before the
canary serves a request, and evidence is counted in bursts (stats.dispersion).
Without a history (the `scrape` provider), the errors comparison waits until the
stable's own blocks have shown how its errors come."""

from __future__ import annotations

from pathlib import Path

from bench.support.sim import Episodes, SimWorld, TrackModel, init_manifest, sim_world

from swiftdeploy.manifest import Policy
from swiftdeploy.policy import EmbeddedEngine
from swiftdeploy.rollout.engine import HISTORY_S, RolloutEngine
from swiftdeploy.rollout.statistics import WEIGHTS, Settings, assess
from swiftdeploy.state import Phase
from swiftdeploy.state.evidence import Counts, Evidence
from swiftdeploy.stats.dispersion import BLOCK_S, KNOWN_BLOCKS
from tests.rollout.conftest import World

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


SETTINGS = Settings.of(Policy())


def _counts(requests: int, errors: int) -> Counts:
    return Counts(requests=requests, errors=errors, buckets={"0.1": requests, "+Inf": requests})


def _history(errors: int) -> list[_Look]:
    """The stable's last KNOWN_BLOCKS blocks before the canary, `errors` of 900 in each."""
    return [
        _look(_counts(900, errors), BLOCK_S * (i - KNOWN_BLOCKS), BLOCK_S)
        for i in range(KNOWN_BLOCKS)
    ]


def _first_look(evidence: Evidence, canary: Counts, stable: Counts) -> Evidence:
    """The canary's first 5 s, with the stable's served meanwhile."""
    evidence = evidence.open_step(0, 10, at=0.0)
    evidence = evidence.counted("canary", _look(canary, 0.0, BLOCK_S))
    return evidence.counted("stable", _look(stable, 0.0, BLOCK_S))


def _unseeded(
    tmp_path: Path, policy: EmbeddedEngine, canary_rps: float, canary: TrackModel, seed: int
) -> tuple[SimWorld, RolloutEngine]:
    """init's defaults with a provider that keeps no history, as `scrape`: a rollout at
    `canary_rps` at the first step, the stable as `canary` or bursting like it."""
    made = sim_world(
        init_manifest(tmp_path),
        total_rps=canary_rps * 10,
        stable=BURSTING if canary.error_bursts else TrackModel(),
        canary=canary,
        seed=seed,
        history=False,
    )
    return made, made.engine(policy)


def test_without_history_a_healthy_canary_on_bursting_replicas_is_promoted(
    tmp_path: Path, shipped_policy: EmbeddedEngine
) -> None:
    # at 20 canary req/s; the code before rolled this one back 2 s in, its canary's
    # replica in a bad half second before the stable's two had shown one
    _, engine = _unseeded(tmp_path, shipped_policy, 20, BURSTING, seed=1020)
    state = engine.run(engine.begin("v2"))
    assert state.phase == Phase.PROMOTED


def test_without_history_a_canary_failing_5_percent_is_still_caught_within_a_minute(
    tmp_path: Path, shipped_policy: EmbeddedEngine
) -> None:
    made, engine = _unseeded(tmp_path, shipped_policy, 5, TrackModel(0.05), seed=20261129)
    started = made.clock.now
    state = engine.run(engine.begin("v2"))
    assert state.phase == Phase.ROLLED_BACK
    assert made.clock.now - started < 75


def test_without_the_stables_history_a_burst_in_the_canarys_first_seconds_waits() -> None:
    # the scrape provider: nothing seeded the stable's spread. In its first 5 s at 20
    # canary req/s the canary's replica has a bad half second (3 of 96 fail), while the
    # stable's two, which fail only in such bursts, had none (a measured rollback)
    canary, stable = _counts(96, 3), _counts(856, 0)
    unseeded = Evidence(latency_bound_s=0.15, p99_limit_s=0.5)
    seen = assess(_first_look(unseeded, canary, stable), SETTINGS)
    assert seen["harm"]["verdict"] == "none"
    errors = seen["errors"]
    assert errors["stable_spread_known"] is False
    assert "the stable's errors are not known yet (1 blocks of 5 s, 0 errors" in errors["note"]
    assert WEIGHTS["errors"] * errors["e_value"] >= 100  # the evidence is kept, and waits
    # a stable whose history says it fails one request in 900 every 5 s, independently:
    # the same look is a regression, at once
    history = _history(errors=1)
    seeded = unseeded.with_history("stable", history)
    assert assess(_first_look(seeded, canary, stable), SETTINGS)["harm"]["verdict"] == "harm"


def test_a_comparison_that_waits_for_the_stable_does_not_pass_by_power() -> None:
    # plenty of clean traffic, in one look: enough for the power, but the stable's
    # errors are one block old; latency (which the warm-up holds back) is not held
    canary, stable = _counts(3000, 15), _counts(12000, 60)
    seen = assess(_first_look(Evidence(latency_bound_s=0.15), canary, stable), SETTINGS)
    errors = seen["errors"]
    assert errors["canary_n"] >= errors["needed"]
    assert errors["passed_by"] != "power"
    assert seen["latency"]["stable_spread_known"] is True
    history = _history(errors=5)
    known = _first_look(
        Evidence(latency_bound_s=0.15).with_history("stable", history), canary, stable
    )
    assert assess(known, SETTINGS)["errors"]["passed_by"] == "power"


class _Look:
    def __init__(self, counts: Counts, start: float, seconds: float) -> None:
        self.requests, self.errors, self.buckets = counts.requests, counts.errors, counts.buckets
        self.window_start, self.window_end = start, start + seconds


def _look(counts: Counts, start: float, seconds: float) -> _Look:
    return _Look(counts, start, seconds)
