"""The engine's sequential tests: the harm e-value against direct computation, the
no-harm e-value of one look, and by simulation the two promises of the harm test: false
alarms at most alpha under continuous looks, and a clear regression caught quickly.
The reference forms (one look's full result, the confidence sequence) are tested in
tests/bench/test_sequential.py."""

from __future__ import annotations

import math

import numpy as np
import pytest
from bench.support.sequential import simulate_counts
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import integrate

from swiftdeploy.stats.sequential import log_e_harm, log_e_no_harm

ALPHA = 0.01


# --- the harm e-value -------------------------------------------------------------


@pytest.mark.parametrize(
    ("x", "nc", "y", "ns", "tolerance"),
    [(5, 100, 4, 900, 0.0), (3, 50, 10, 450, 0.5), (0, 100, 3, 100, 0.0), (12, 300, 30, 300, 0.2)],
)
def test_harm_e_value_is_the_truncated_uniform_mixture(
    x: int, nc: int, y: int, ns: int, tolerance: float
) -> None:
    share = nc / (nc + ns)
    theta0 = share * (1 + tolerance) / (share * (1 + tolerance) + 1 - share)

    def ratio(theta: float) -> float:
        return float((theta / theta0) ** x * ((1 - theta) / (1 - theta0)) ** y)

    mixture = integrate.quad(ratio, theta0, 1, epsabs=0, epsrel=1e-11)[0] / (1 - theta0)
    assert float(log_e_harm(x, y, nc, ns, tolerance)) == pytest.approx(math.log(mixture), 1e-9)


@settings(max_examples=60, deadline=None)
@given(
    nc=st.integers(1, 5000),
    ns=st.integers(1, 5000),
    y=st.integers(0, 50),
    x=st.integers(0, 49),
)
def test_one_more_canary_event_never_weakens_harm(nc: int, ns: int, y: int, x: int) -> None:
    x = min(x, nc - 1)
    y = min(y, ns)
    fewer = float(log_e_harm(x, y, nc, ns))
    more = float(log_e_harm(x + 1, y, nc, ns))
    assert more >= fewer - 1e-9


# --- the no-harm e-value of one look ------------------------------------------------


def test_many_clean_requests_prove_no_harm_in_one_look() -> None:
    assert log_e_no_harm(100, 20_000, 900, 180_000, 0.0, 0.01) >= math.log(1 / ALPHA)
    assert log_e_no_harm(10, 200, 90, 1800, 0.0, 0.01) < math.log(1 / ALPHA)


@pytest.mark.parametrize("counts", [(0, 0, 0, 0), (0, 0, 5, 100), (0, 100, 0, 0)])
def test_no_harm_without_traffic_on_an_arm_is_no_evidence(
    counts: tuple[int, int, int, int],
) -> None:
    assert log_e_no_harm(*counts) == 0.0


# --- simulation: continuous looks -------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize(
    ("alpha", "canary_per_look", "stable_per_look", "p"),
    [
        (0.05, 2.0, 18.0, 0.02),  # 1 rps canary at 10%, looks every 2 s, 10 minutes
        (0.05, 10.0, 10.0, 0.01),  # 50% step
        (0.01, 2.0, 18.0, 0.05),
    ],
)
def test_false_harm_rate_under_continuous_looks_is_at_most_alpha(
    alpha: float, canary_per_look: float, stable_per_look: float, p: float
) -> None:
    rng = np.random.default_rng(20240611)
    runs, looks = 4000, 300
    xc, nc, xs, ns = simulate_counts(rng, runs, looks, canary_per_look, stable_per_look, p, p)
    crossed = (log_e_harm(xc, xs, nc, ns) >= math.log(1 / alpha)).any(axis=1)
    rate = crossed.mean()
    # Monte Carlo margin: three standard errors at the nominal rate.
    assert rate <= alpha + 3 * math.sqrt(alpha * (1 - alpha) / runs)


@pytest.mark.slow
def test_clear_regression_is_caught_within_a_minute_or_two() -> None:
    rng = np.random.default_rng(11)
    runs, looks = 2000, 150  # 5 minutes of 2 s looks
    # 5 rps canary at 10% with 5% errors; stable 45 rps at 0.5%
    xc, nc, xs, ns = simulate_counts(rng, runs, looks, 10.0, 90.0, 0.05, 0.005)
    crossed = log_e_harm(xc, xs, nc, ns) >= math.log(1 / ALPHA)
    assert crossed.any(axis=1).mean() >= 0.999
    first_look = crossed.argmax(axis=1) + 1
    assert np.median(first_look) * 2.0 <= 30.0  # seconds
    assert np.percentile(first_look, 95) * 2.0 <= 90.0
