"""The power of the harm test, checked against simulation of the test itself."""

from __future__ import annotations

import math

import numpy as np
import pytest

from swiftdeploy.stats.power import (
    needed_requests,
    pessimistic_rate,
    power,
    round_up,
)
from swiftdeploy.stats.sequential import log_e_harm

BAR = math.log(1 / (0.6 * 0.01))


@pytest.mark.parametrize(("p_stable", "share"), [(0.005, 0.1), (0.0005, 0.25), (0.02, 0.5)])
def test_power_at_the_needed_requests_matches_simulation(p_stable: float, share: float) -> None:
    needed = needed_requests(share, p_stable, p_stable + 0.01, BAR, 0.1)
    assert needed is not None
    rng = np.random.default_rng(11)
    runs = 4000
    canary = rng.binomial(needed, p_stable + 0.01, runs)
    stable_n = round(needed * (1 - share) / share)
    stable = rng.binomial(stable_n, p_stable, runs)
    reached = log_e_harm(canary, stable, needed, stable_n) >= BAR
    # the formula says 90%; 4,000 runs put the simulated share within about 1.5 points
    assert abs(reached.mean() - 0.9) < 0.02


def test_power_grows_with_requests() -> None:
    values = [power(n, 0.1, 0.005, 0.015, BAR) for n in (200, 800, 1600, 3200)]
    assert values == sorted(values)
    assert values[0] < 0.2 < 0.9 < values[-1]


def test_no_regression_has_no_power_and_no_plan() -> None:
    assert power(5000, 0.1, 0.01, 0.01, BAR) == 0.0
    assert needed_requests(0.1, 0.01, 0.01, BAR, 0.1) is None


def test_a_hopeless_plan_is_none_not_a_hang() -> None:
    assert needed_requests(0.1, 0.4, 0.401, BAR, 0.1) is None


def test_pessimistic_rate_is_above_the_estimate() -> None:
    assert pessimistic_rate(0, 0) is None
    upper = pessimistic_rate(5, 1000)
    assert upper is not None
    assert 0.005 < upper < 0.02
    zero = pessimistic_rate(0, 2700)
    assert zero is not None
    assert 0 < zero < 0.002


@pytest.mark.parametrize(
    ("value", "expected"), [(0.00712, 0.0072), (0.0072, 0.0072), (123.4, 130), (0, 0)]
)
def test_round_up_keeps_two_digits_and_never_goes_down(value: float, expected: float) -> None:
    assert round_up(value) == pytest.approx(expected)
