"""A track's dispersion is about 1 for independent events and about a burst's size
when events come in bursts; deflated evidence never rolls back more than the exact."""

from __future__ import annotations

import math

import numpy as np
import pytest

from swiftdeploy.stats.dispersion import (
    BLOCK_S,
    HISTORY_BLOCKS,
    KNOWN_BLOCKS,
    NOISE_SE,
    PRIOR_BLOCKS,
    Dispersion,
    deflated,
)


def _spread(events: np.ndarray, requests: int, seconds: float = BLOCK_S) -> Dispersion:
    spread = Dispersion()
    for count in events:
        spread = spread.add(int(count), requests, seconds)
    return spread


def test_independent_events_give_a_factor_near_1() -> None:
    rng = np.random.default_rng(7)
    factors = [_spread(rng.binomial(400, 0.01, size=60), 400).factor for _ in range(200)]
    assert min(factors) == 1.0  # never below 1
    assert np.median(factors) < 1.1
    assert np.quantile(factors, 0.95) < 1.5


def test_a_burst_gives_about_the_requests_that_fail_together() -> None:
    rng = np.random.default_rng(8)
    # 12 blocks of 2,000 requests at 1%, one of which also has a burst of 100
    for _ in range(20):
        events = rng.binomial(2000, 0.01, size=12)
        events[rng.integers(12)] += 100
        factor = _spread(events, 2000).factor
        # the blocks' variance over their mean (the design effect): 1% of 2,000 plus
        # a burst of 100 in one of 12 blocks gives (20 + 100**2 * 11 / 144) /
        # (20 + 100 / 12) = 27.7, against 1 for independent events
        assert 15 < factor < 50


def test_looks_shorter_than_a_block_are_counted_together() -> None:
    # a burst of 60 over three quarter-second looks is one block's events, not three
    # looks' worth of independent ones
    looks = [0] * 20 + [20, 20, 20] + [0] * 57
    quick = Dispersion()
    for count in looks:
        quick = quick.add(count, 100, 0.25)  # 80 looks, 20 s: four blocks
    assert quick.blocks == 4
    assert quick.events == 60
    assert quick.squares == pytest.approx(60**2 / 2000)


def test_the_open_block_counts_before_it_closes() -> None:
    closed = _spread(np.array([1, 2, 1]), 1000)
    burst = closed.add(80, 300, 1.0)  # a second into the next block, a burst
    assert burst.blocks == 3
    assert burst.open_events == 80
    assert burst.factor > 10 * closed.factor


def test_the_sum_of_squares_is_kept_exactly() -> None:
    spread = Dispersion().add(3, 10, BLOCK_S).add(0, 10, BLOCK_S).add(0, 0, BLOCK_S)
    # a block without requests adds nothing
    assert (spread.blocks, spread.events, spread.requests) == (2, 3, 20)
    assert spread.squares == pytest.approx(0.9)
    bursty = spread.add(9, 10, BLOCK_S)
    assert bursty.squares == pytest.approx(0.9 + 8.1)
    # Pearson: (9 - 0.4 * 12) / (0.4 * 0.6) over 2 df, shrunk by PRIOR_BLOCKS, less
    # NOISE_SE standard errors of its estimate
    pearson = (9.0 - 0.4 * 12) / (0.4 * 0.6)
    freedom = 2 + PRIOR_BLOCKS
    expected = (pearson + PRIOR_BLOCKS) / freedom - NOISE_SE * math.sqrt(2 / freedom)
    assert bursty.factor == pytest.approx(expected)


@pytest.mark.parametrize(
    "spread",
    [
        Dispersion(),
        Dispersion().add(5, 10, BLOCK_S),
        Dispersion().add(10, 10, BLOCK_S).add(10, 10, BLOCK_S),
        Dispersion().add(0, 10, BLOCK_S).add(0, 10, BLOCK_S),
    ],
)
def test_no_factor_without_two_blocks_or_with_every_request_failed(spread: Dispersion) -> None:
    assert spread.factor == 1.0


def test_known_blocks_are_where_the_noise_taken_off_is_one() -> None:
    freedom = KNOWN_BLOCKS - 1 + PRIOR_BLOCKS
    assert NOISE_SE * math.sqrt(2 / freedom) <= 1.0 < NOISE_SE * math.sqrt(2 / (freedom - 1))


def test_a_spread_is_known_from_enough_blocks_and_events() -> None:
    one_each = _spread(np.ones(KNOWN_BLOCKS, dtype=int), 100)
    assert one_each.known
    # a block short, or an event short: not yet
    assert not _spread(np.ones(KNOWN_BLOCKS - 1, dtype=int), 100).known
    assert not _spread(np.array([0] * (KNOWN_BLOCKS - 1) + [KNOWN_BLOCKS - 1]), 100).known
    # the open block does not count until it closes
    assert not _spread(np.ones(KNOWN_BLOCKS - 1, dtype=int), 100).add(5, 100, 1.0).known
    # one burst's events in one block, among enough blocks: known (and bursty)
    burst = _spread(np.array([0] * (KNOWN_BLOCKS - 1) + [30]), 100)
    assert burst.known
    assert burst.factor > 10
    # no events at all: only as many blocks as a history gives make it known
    quiet = _spread(np.zeros(HISTORY_BLOCKS - 1, dtype=int), 100)
    assert not quiet.known
    assert quiet.add(0, 100, BLOCK_S).known


def test_deflated_evidence_reaches_a_bar_only_where_the_exact_did() -> None:
    bar = math.log(100)
    for log_e in (-3.0, 0.0, 2.0, 4.6, 9.0, 50.0):
        for factor in (1.0, 1.7, 12.0):
            if deflated(log_e, factor) >= bar:
                assert log_e >= bar
    assert deflated(9.0, 3.0) == 3.0
    assert deflated(-2.0, 3.0) == -2.0  # evidence against harm stays whole
