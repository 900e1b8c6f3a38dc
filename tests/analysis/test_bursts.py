"""The per-look cap on the canary's events toward harm."""

from __future__ import annotations

import numpy as np

from swiftdeploy.analysis.bursts import BURST_TAIL, burst_cap, capped


def test_the_regression_worth_catching_rarely_reaches_the_cap() -> None:
    # Looks of 5 to 5,000 canary requests, events at the planned rate: the cap binds in
    # about BURST_TAIL of looks at twice the rate, so at the rate itself almost never
    rng = np.random.default_rng(3)
    for requests in (5, 50, 500, 5000):
        for rate in (0.005, 0.015, 0.034):
            looks = rng.binomial(requests, rate, 200_000)
            bound = burst_cap(requests, rate)
            assert np.mean(looks > bound) <= BURST_TAIL, (requests, rate, bound)


def test_a_burst_counts_at_most_the_cap() -> None:
    # A replica stalled for a whole look of 500 canary requests: all 500 slow, counted
    # as about what 2% of them would be at worst
    cap = burst_cap(500, 0.01)
    assert 10 < cap < 30
    assert capped(500, 500, 0.01) == cap
    assert capped(3, 500, 0.01) == 3  # under the cap, every event counts
    assert capped(7, 500, None) == 7  # no rate (a ledger from before): all of them
    assert burst_cap(0, 0.01) == 0
    assert burst_cap(1, 0.001) == 1  # a look with requests always counts one event
