"""The simulated service's field conditions (bench/support/sim.py), not the engine:
cold starts, stalls, error bursts and the random split behave as bench/rollouts.py
says. Seeded, with tolerances of several standard deviations of what is estimated."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from bench.support.sim import (
    BOUNDS,
    DEFAULT_REPLICAS,
    Episodes,
    SimClock,
    SimTraffic,
    Split,
    TrackModel,
    init_manifest,
    sim_world,
)

STALLING = TrackModel(0.005, stalls=Episodes(share=0.02, duration_s=0.5), stall_slowdown=10.0)
BURSTING = TrackModel(0.0, error_bursts=Episodes(share=0.01, duration_s=0.5), burst_error_rate=0.5)
FAST = BOUNDS.index(0.025) + 1  # buckets holding requests <= 25 ms
SLOW = BOUNDS.index(0.1) + 1  # buckets from here hold requests > 100 ms


@dataclass
class Steps:
    """One track's increments, step by step."""

    requests: np.ndarray
    errors: np.ndarray
    buckets: np.ndarray  # steps x buckets


def traffic_for(
    stable: TrackModel,
    canary: TrackModel,
    total_rps: float,
    weight: int,
    seed: int,
    split: Split = "interleave",
) -> SimTraffic:
    """A service whose canary starts now at `weight`."""
    traffic = SimTraffic(
        SimClock(), total_rps, stable, canary, np.random.default_rng(seed), split=split
    )
    traffic.start_track("canary", DEFAULT_REPLICAS["canary"])
    traffic.set_weight(weight)
    return traffic


def run(traffic: SimTraffic, seconds: float, step_s: float) -> dict[str, Steps]:
    """Advance `seconds`, reading both tracks every `step_s`."""
    before = {track: traffic.reading(track) for track in ("canary", "stable")}
    rows: dict[str, list[tuple[int, int, np.ndarray]]] = {"canary": [], "stable": []}
    for _ in range(round(seconds / step_s)):
        traffic.clock.sleep(step_s)
        for track, row in rows.items():
            now = traffic.reading(track)
            then = before[track]
            row.append(
                (now.requests - then.requests, now.errors - then.errors, now.buckets - then.buckets)
            )
            before[track] = now
    return {
        track: Steps(
            requests=np.array([r[0] for r in row]),
            errors=np.array([r[1] for r in row]),
            buckets=np.array([r[2] for r in row]).reshape(len(row), -1),
        )
        for track, row in rows.items()
    }


def frequencies(buckets: np.ndarray) -> np.ndarray:
    total = buckets.sum(axis=0)
    shares: np.ndarray = total / total.sum()
    return shares


# --- cold start ----------------------------------------------------------------------------


def test_cold_start_by_time_is_3x_slower_for_60s_then_as_stable() -> None:
    canary = TrackModel(cold_start_s=60.0, cold_slowdown=3.0)
    traffic = traffic_for(TrackModel(), canary, total_rps=1000, weight=50, seed=1)
    cold = run(traffic, 60, 1.0)["canary"]
    warm = run(traffic, 120, 1.0)["canary"]
    # 30,000 and 60,000 requests: a bucket's share has a standard deviation <= 0.003
    assert cold.buckets.sum() == pytest.approx(30_000, rel=0.03)
    slow = frequencies(cold.buckets)
    assert np.abs(slow - canary.bucket_probabilities(3.0)).max() < 0.015
    assert np.abs(frequencies(warm.buckets) - canary.bucket_probabilities()).max() < 0.015
    # 3x is unmistakable: two thirds of stable requests are within 25 ms, 4% of cold ones
    assert slow[:FAST].sum() == pytest.approx(0.040, abs=0.01)
    assert frequencies(warm.buckets)[:FAST].sum() == pytest.approx(0.672, abs=0.01)


def test_cold_start_by_requests_is_3x_slower_for_the_first_300() -> None:
    canary = TrackModel(cold_start_requests=300, cold_slowdown=3.0)
    cold = np.zeros(len(BOUNDS) + 1, dtype=np.int64)
    warm = np.zeros(len(BOUNDS) + 1, dtype=np.int64)
    for seed in range(20):
        traffic = traffic_for(TrackModel(), canary, total_rps=20, weight=50, seed=seed)
        steps = run(traffic, 60, 1.0)["canary"]
        served = np.cumsum(steps.requests)
        # steps wholly within the first 300 requests, and wholly after them
        cold += steps.buckets[served <= 300].sum(axis=0)
        warm += steps.buckets[served - steps.requests >= 300].sum(axis=0)
    # about 5,000 of each: shares with a standard deviation <= 0.007
    assert cold.sum() > 4_000
    assert warm.sum() > 4_000
    assert np.abs(cold / cold.sum() - canary.bucket_probabilities(3.0)).max() < 0.03
    assert np.abs(warm / warm.sum() - canary.bucket_probabilities()).max() < 0.03


def test_the_canary_starts_when_its_replicas_start(tmp_path: Path) -> None:
    world = sim_world(
        init_manifest(tmp_path), total_rps=10, stable=TrackModel(), canary=TrackModel(), seed=1
    )
    traffic = world.traffic
    assert traffic.replicas == {"stable": 2, "canary": 1}
    assert traffic.started_at["canary"] is None
    world.clock.sleep(5)
    world.tracks.ensure_track(world.store.load(), "canary", "v2", 1)
    assert traffic.started_at["canary"] == world.clock.now
    world.clock.sleep(5)
    traffic.set_weight(10)  # its traffic comes later: the start stays when it started
    assert traffic.started_at["canary"] == world.clock.now - 5


def test_without_a_start_the_canary_starts_with_its_first_traffic() -> None:
    clock = SimClock()
    traffic = SimTraffic(clock, 10, TrackModel(), TrackModel(), np.random.default_rng(1))
    clock.sleep(5)
    traffic.set_weight(0)
    assert traffic.started_at["canary"] is None
    traffic.set_weight(10)
    assert traffic.started_at["canary"] == clock.now


# --- stalls and error bursts --------------------------------------------------------------


def test_stalls_slow_2pc_of_each_replicas_time_10x_in_bursts() -> None:
    traffic = traffic_for(STALLING, STALLING, total_rps=200, weight=50, seed=3)
    steps = run(traffic, 20_000, 1.0)
    # A stalled request is over 100 ms with probability P(X > 10 ms) = 0.917; an
    # unstalled one with P(X > 100 ms) = 0.0006: 0.02 * 0.917 + 0.98 * 0.0006 = 0.0190.
    for track, episodes in (("stable", 1600), ("canary", 800)):
        slow = steps[track].buckets[:, SLOW:].sum(axis=1)
        share = slow.sum() / steps[track].requests.sum()
        # `episodes` stalls in all (20,000 s x replicas x 0.02 / 0.5 s): their number,
        # so the share, varies by about 1/sqrt(episodes) <= 3.5%; 4 sigma
        assert share == pytest.approx(0.0190, rel=4 / np.sqrt(episodes)), track
        # Slow requests come together: per-second counts vary far more than a Poisson
        # count's (variance = mean); a stall brings about 25 to 46 slow ones at once.
        assert slow.var() > 10 * slow.mean(), track
    # Outside stalls, latency is the model's own: the fast buckets hold what 98% of
    # requests at normal speed put there.
    fast = frequencies(steps["canary"].buckets)[:FAST].sum()
    assert fast == pytest.approx(0.98 * 0.672, abs=0.02)


def test_error_bursts_fail_half_a_bad_replicas_requests_and_0_5pc_overall() -> None:
    assert BURSTING.mean_error_rate() == pytest.approx(0.005)
    traffic = traffic_for(BURSTING, BURSTING, total_rps=200, weight=50, seed=4)
    steps = run(traffic, 20_000, 1.0)
    # 800 bursts on stable (2 replicas), 400 on the canary, about 12.5 errors each:
    # the rate varies by about sqrt(1.1 / bursts) <= 5.2%; 4 sigma
    for track, bursts in (("stable", 800), ("canary", 400)):
        errors = steps[track].errors
        rate = errors.sum() / steps[track].requests.sum()
        assert rate == pytest.approx(0.005, rel=4 * np.sqrt(1.1 / bursts)), track
        # errors come in bursts, not as a binomial count's (variance ~ mean)
        assert errors.var() > 5 * errors.mean(), track
        # and none outside them: over 90% of seconds have no error at all (errors
        # spread evenly, at 0.5 a second, would leave exp(-0.5) = 61% without)
        assert np.mean(errors == 0) > 0.9, track


def test_each_replica_stalls_on_its_own_and_serves_every_other_request() -> None:
    # Episodes of 1,000 s, half the time: over 10 s each of the stable's 2 replicas is
    # either stalled or not throughout, independently, and serves half the requests.
    halves = TrackModel(0.0, stalls=Episodes(share=0.5, duration_s=1000.0))
    stalled = 0.917  # P(10X > 100 ms)
    shares = []
    for seed in range(10):
        traffic = traffic_for(halves, TrackModel(), total_rps=1000, weight=0, seed=seed)
        stable = run(traffic, 10, 0.25)["stable"]
        shares.append(stable.buckets[:, SLOW:].sum() / stable.requests.sum())
    # 10,000 requests a seed: a share's standard deviation is at most 0.005
    nearest = [min((0.0, stalled / 2, stalled), key=lambda x: abs(x - s)) for s in shares]
    assert np.abs(np.array(shares) - nearest).max() < 0.025
    assert stalled / 2 in nearest  # one replica stalled, the other not: half slow


# --- the split -----------------------------------------------------------------------------


@pytest.mark.parametrize("model", [TrackModel(), STALLING], ids=["counts", "per-request"])
def test_random_split_gives_weight_on_average_but_not_the_interleave(model: TrackModel) -> None:
    deviations = {}
    for split in ("interleave", "random"):
        traffic = traffic_for(model, model, total_rps=1000, weight=10, seed=6, split=split)
        steps = run(traffic, 300, 0.1)
        canary = steps["canary"].requests
        arrivals = canary + steps["stable"].requests
        # 300,000 requests: the canary's share has a standard deviation of 0.0005
        assert canary.sum() / arrivals.sum() == pytest.approx(0.1, abs=0.002), split
        deviations[split] = canary - arrivals * 0.1
    # nginx's interleave is exact: any run of requests carries weight% to within one
    assert np.abs(deviations["interleave"]).max() < 1
    # a Bernoulli split's count over ~100 requests varies binomially: variance
    # 100 * 0.1 * 0.9 = 9 (3,000 steps: the estimate's own deviation is 2.6%)
    assert deviations["random"].var() == pytest.approx(9, rel=0.2)
