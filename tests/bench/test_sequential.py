"""bench/support/sequential.py, the reference forms of the sequential tests: the
no-harm e-value is the infimum over its null (and the engine's one-look form agrees),
the confidence sequence, one look's full result and its edges, and by simulation no
false "no harm" at the margin beyond alpha."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from bench.support.sequential import (
    difference_cs,
    line_infimum,
    log_e_no_harm_arrays,
    log_mixture,
    sequential_test,
    simulate_counts,
)
from hypothesis import given, settings
from hypothesis import strategies as st

from swiftdeploy.stats.sequential import E_VALUE_CAP, log_e_no_harm

ALPHA = 0.01


def test_clear_regression_is_harm() -> None:
    result = sequential_test(412, 21, 1650, 5, alpha=ALPHA)
    assert result.verdict == "harm"
    assert result.e_value >= 1 / ALPHA
    assert result.p_value == pytest.approx(1 / result.e_value)
    assert result.effect == pytest.approx(21 / 412 - 5 / 1650)
    assert result.ci_low > 0
    assert result.ratio == pytest.approx((21 / 412) / (5 / 1650))


def test_fair_share_of_events_is_no_evidence_of_harm() -> None:
    result = sequential_test(1000, 5, 9000, 45)
    assert result.e_value < 1
    assert result.verdict == "continue"


def test_tolerance_raises_the_bar() -> None:
    strict = sequential_test(200, 6, 1800, 18, tolerance=0.0)
    lenient = sequential_test(200, 6, 1800, 18, tolerance=0.5)
    assert lenient.e_value < strict.e_value


def _brute_no_harm(x: int, nc: int, y: int, ns: int, tolerance: float, margin: float) -> float:
    """min of log M_c + log M_s over H0' by a fine search along its boundary line."""
    slope = 1 + tolerance
    p_s = np.linspace(0, (1 - margin) / slope, 400_001)[1:-1]
    value = float(np.min(log_mixture(x, nc, slope * p_s + margin) + log_mixture(y, ns, p_s)))
    if x / nc >= slope * y / ns + margin:  # the estimate is in H0': its global minimum
        value = min(value, float(log_mixture(x, nc, x / nc) + log_mixture(y, ns, y / ns)))
    return value


@pytest.mark.parametrize(
    ("x", "nc", "y", "ns", "tolerance", "margin"),
    [
        (0, 600, 27, 5400, 0.0, 0.01),
        (10, 2000, 90, 18000, 0.0, 0.01),
        (3, 300, 2, 300, 0.5, 0.02),
        (30, 300, 2, 300, 0.0, 0.01),
        (40, 400, 0, 0, 0.0, 0.01),
    ],
)
def test_no_harm_e_value_is_the_infimum_over_the_null(
    x: int, nc: int, y: int, ns: int, tolerance: float, margin: float
) -> None:
    # the arrays' form (the benchmarks') and the one-look form (the engine's) alike
    got = float(log_e_no_harm_arrays(x, nc, y, ns, tolerance, margin))
    assert log_e_no_harm(x, nc, y, ns, tolerance, margin) == pytest.approx(got, abs=1e-9)
    if ns == 0:
        assert got == 0.0
        return
    assert got == pytest.approx(_brute_no_harm(x, nc, y, ns, tolerance, margin), abs=1e-6)


def test_many_clean_requests_prove_no_harm() -> None:
    result = sequential_test(20_000, 100, 180_000, 900, alpha=ALPHA, margin=0.01)
    assert result.verdict == "no_harm"
    assert result.e_value_no_harm >= 1 / ALPHA
    assert result.ci_high < 0.01
    assert result.ci_low < 0 < result.ci_high


@settings(max_examples=40, deadline=None)
@given(
    nc=st.integers(1, 20_000),
    ns=st.integers(1, 20_000),
    fc=st.floats(0, 0.2),
    fs=st.floats(0, 0.2),
    margin=st.sampled_from([0.005, 0.01, 0.05]),
)
def test_no_harm_agrees_with_the_confidence_sequence(
    nc: int, ns: int, fc: float, fs: float, margin: float
) -> None:
    """With tolerance 0, no-harm at level alpha is ci_high < margin (same mixtures)."""
    x, y = round(fc * nc), round(fs * ns)
    low, high = difference_cs(x, nc, y, ns, ALPHA)
    assert low <= x / nc - y / ns <= high
    log_e = float(log_e_no_harm_arrays(x, nc, y, ns, 0.0, margin))
    if abs(high - margin) > 1e-6:  # away from the knife edge
        assert (log_e >= math.log(1 / ALPHA)) == (high < margin)


@pytest.mark.parametrize(
    ("x", "nc", "y", "ns"), [(21, 412, 5, 1650), (0, 600, 27, 5400), (3, 40, 1, 400), (9, 9, 0, 5)]
)
def test_confidence_sequence_ends_where_the_evidence_reaches_one_over_alpha(
    x: int, nc: int, y: int, ns: int
) -> None:
    low, high = difference_cs(x, nc, y, ns, ALPHA)
    for end in (low, high):
        if abs(end) < 1:
            assert float(line_infimum(x, nc, y, ns, 1.0, end)) == pytest.approx(
                math.log(1 / ALPHA), abs=1e-6
            )
    inside = (low + high) / 2
    assert float(line_infimum(x, nc, y, ns, 1.0, inside)) < math.log(1 / ALPHA)


def test_confidence_sequence_narrows_with_data() -> None:
    small = difference_cs(5, 100, 45, 900, ALPHA)
    large = difference_cs(500, 10_000, 4500, 90_000, ALPHA)
    assert small[1] - small[0] > 5 * (large[1] - large[0])


@pytest.mark.parametrize(
    "counts",
    [(0, 0, 0, 0), (0, 0, 100, 3), (100, 3, 0, 0), (100, 0, 900, 0), (1, 1, 0, 0)],
)
def test_no_traffic_or_no_events_means_continue(counts: tuple[int, int, int, int]) -> None:
    result = sequential_test(*counts)
    assert result.verdict == "continue"
    assert result.e_value <= 1
    assert result.p_value == 1.0
    assert -1 <= result.ci_low <= result.ci_high <= 1
    if counts[0] == 0 or counts[2] == 0:
        assert result.e_value == 1.0
        assert result.effect is None


def test_running_maximum_keeps_a_verdict_and_the_p_value() -> None:
    result = sequential_test(1000, 5, 9000, 45, previous_max_e=250.0)
    assert result.verdict == "harm"
    assert result.max_e_value == 250.0
    assert result.p_value == pytest.approx(1 / 250)
    assert result.e_value < 1  # the current look alone shows nothing


def test_harm_wins_over_no_harm() -> None:
    result = sequential_test(1000, 5, 9000, 45, previous_max_e=200, previous_max_e_no_harm=200)
    assert result.verdict == "harm"


def test_huge_evidence_stays_finite_and_serialisable() -> None:
    result = sequential_test(10**7, 10**5, 10**8, 10**5)
    assert result.e_value == pytest.approx(E_VALUE_CAP)
    assert math.isfinite(result.e_value_no_harm)
    data = json.loads(result.model_dump_json())
    assert data["verdict"] == "harm"
    assert {"e_value", "p_value", "effect", "ci_low", "ci_high", "canary_n"} <= set(data)


@pytest.mark.parametrize(
    ("args", "kwargs", "match"),
    [
        ((10, 11, 10, 0), {}, "exceed"),
        ((-1, 0, 10, 0), {}, "non-negative"),
        ((10, True, 10, 0), {}, "integers"),
        ((10, 1, 10, 0), {"alpha": 0.0}, "alpha"),
        ((10, 1, 10, 0), {"alpha": 1.5}, "alpha"),
        ((10, 1, 10, 0), {"tolerance": -0.1}, "tolerance"),
        ((10, 1, 10, 0), {"margin": 1.0}, "margin"),
        ((10, 1, 10, 0), {"previous_max_e": math.inf}, "previous_max_e"),
    ],
)
def test_impossible_input_is_refused(
    args: tuple[int, int, int, int], kwargs: dict[str, float], match: str
) -> None:
    with pytest.raises(ValueError, match=match):
        sequential_test(*args, **kwargs)  # type: ignore[arg-type]


@pytest.mark.slow
def test_false_no_harm_rate_at_the_margin_is_at_most_alpha() -> None:
    rng = np.random.default_rng(7)
    runs, looks, alpha, margin = 2000, 150, 0.05, 0.02
    # the canary is worse by exactly the margin: the hardest case for H0'
    xc, nc, xs, ns = simulate_counts(rng, runs, looks, 10.0, 30.0, 0.03, 0.01)
    log_e = log_e_no_harm_arrays(xc, nc, xs, ns, 0.0, margin)
    rate = (log_e >= math.log(1 / alpha)).any(axis=1).mean()
    assert rate <= alpha + 3 * math.sqrt(alpha * (1 - alpha) / runs)
