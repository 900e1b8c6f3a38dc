"""histogram_quantile against Prometheus's own test data and a direct reference."""

from __future__ import annotations

import math
from itertools import accumulate

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from swiftdeploy.stats.quantile import SloEvents, histogram_quantile, slo_events

INF = math.inf
NAN = math.nan


def reference_quantile(q: float, buckets: list[tuple[float, float]]) -> float:
    """bucketQuantile as the prose of promql/quantile.go states it, written plainly.

    A dict merges duplicate bounds, a running max forces monotonic counts and a
    linear scan finds the bucket. Valid for finite, non-negative counts (for which the
    binary search in the real thing and this scan agree).
    """
    if math.isnan(q):
        return NAN
    if q < 0:
        return -INF
    if q > 1:
        return INF
    if not buckets or max(bound for bound, _ in buckets) != INF:
        return NAN
    merged: dict[float, float] = {}
    for bound, count in sorted(buckets, key=lambda b: b[0]):
        merged[bound] = merged.get(bound, 0.0) + count
    bounds = sorted(merged)
    raw = [merged[bound] for bound in bounds]
    # Steps of relative size <= 1e-12 are float noise: keep the previous count.
    fixed = [raw[0]]
    kept = raw[0]
    for count in raw[1:]:
        step = abs(count - kept)
        if step != 0 and count != 0 and step / count <= 1e-12:
            fixed.append(kept)
        else:
            fixed.append(count)
            if step != 0:
                kept = count
    counts = list(accumulate(fixed, max))
    if len(bounds) < 2 or counts[-1] == 0:
        return NAN
    rank = q * counts[-1]
    last = len(bounds) - 1
    index = next((i for i in range(last) if counts[i] >= rank), last)
    if index == last:
        return bounds[-2]
    if index == 0:
        if bounds[0] <= 0:
            return bounds[0]
        lower, below = 0.0, 0.0
    else:
        lower, below = bounds[index - 1], counts[index - 1]
    in_bucket = counts[index] - below
    if in_bucket == 0:  # only q == 0 with an empty lowest bucket: Go's 0/0
        return NAN
    return lower + (bounds[index] - lower) * ((rank - below) / in_bucket)


def same(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or a == b


# --- cases from prometheus/prometheus promql/promqltest/testdata/histograms.test ---
# (values at 50m of `0+Nx10` series loaded every 5m, i.e. 10*N)

POSITIVE = [(0.1, 50), (0.2, 70), (1.0, 110), (INF, 120)]
NEGATIVE = [(-0.2, 10), (-0.1, 20), (0.3, 20), (INF, 30)]
HISTOGRAM3_POSITIVE = [(0.0, 0), (0.1, 50), (0.2, 70), (1.0, 110), (INF, 110)]
HISTOGRAM3_NEGATIVE = [(-0.25, 0), (-0.2, 10), (-0.1, 20), (0.3, 20), (INF, 20)]
MIDDLE = [(0.0, 0), (2.0, 1), (4.0, 2), (6.0, 3), (INF, 3)]
NONMONOTONIC = [(0.1, 20), (1.0, 10), (10.0, 50), (100.0, 40), (1000.0, 90), (INF, 80)]
AGGREGATED = [(0.1, 100), (0.2, 190), (INF, 250)]  # sum by (le) over four instances
MIXED = [(0.1, 1), (0.2, 1), (float("2e-1"), 1), (float("2.0e-1"), 1), (INF, 4)]


@pytest.mark.parametrize(
    ("q", "buckets", "expected"),
    [
        (0.0, POSITIVE, 0.0),
        (0.0, NEGATIVE, -0.2),
        (1.0, POSITIVE, 1.0),
        (1.0, NEGATIVE, 0.3),
        (0.2, POSITIVE, 0.048),
        (0.2, NEGATIVE, -0.2),
        (0.5, POSITIVE, 0.15),
        (0.5, NEGATIVE, -0.15),
        (0.8, POSITIVE, 0.72),
        (0.8, NEGATIVE, 0.3),
        (0.0, HISTOGRAM3_POSITIVE, 0.0),
        (0.0, HISTOGRAM3_NEGATIVE, -0.25),
        (0.25, HISTOGRAM3_POSITIVE, 0.055),
        (0.25, HISTOGRAM3_NEGATIVE, -0.225),
        (0.5, HISTOGRAM3_POSITIVE, 0.125),
        (0.5, HISTOGRAM3_NEGATIVE, -0.2),
        (0.75, HISTOGRAM3_POSITIVE, 0.45),
        (0.75, HISTOGRAM3_NEGATIVE, -0.15),
        (1.0, HISTOGRAM3_POSITIVE, 1.0),
        (1.0, HISTOGRAM3_NEGATIVE, -0.1),
        (1.0 / 6.0, MIDDLE, 1.0),
        (0.5, MIDDLE, 3.0),
        (5.0 / 6.0, MIDDLE, 5.0),
        (0.01, NONMONOTONIC, 0.0045),
        (0.5, NONMONOTONIC, 8.5),
        (0.99, NONMONOTONIC, 979.75),
        (0.3, AGGREGATED, 0.075),
        (0.5, AGGREGATED, 0.1277777777777778),
        (0.5, MIXED, 0.15),
        (0.75, MIXED, 0.2),
        (1.0, MIXED, 0.2),
    ],
)
def test_matches_prometheus_test_data(
    q: float, buckets: list[tuple[float, float]], expected: float
) -> None:
    assert histogram_quantile(q, buckets) == pytest.approx(expected, rel=1e-12, abs=1e-15)


@pytest.mark.parametrize(
    ("q", "buckets", "expected"),
    [
        (-0.1, POSITIVE, -INF),
        (1.01, POSITIVE, INF),
        (NAN, POSITIVE, NAN),
        (0.5, [(0.1, 0), (0.2, 0), (INF, 0)], NAN),  # no observations
        (0.5, [(INF, 0), (INF, 0)], NAN),  # "+inf" and "+Inf": one bucket after merging
        (0.5, [(INF, 10)], NAN),  # a single bucket
        (0.5, [(0.1, 5), (0.2, 10)], NAN),  # no +Inf bucket
        (0.5, [], NAN),
        (0.0, [(0.1, 0), (INF, 4)], NAN),  # q=0 over an empty lowest bucket: Go's 0/0
        (0.5, [(0.1, 0), (0.2, 0), (INF, 4)], 0.2),  # all traffic in +Inf
        (1.0, [(0.1, 0), (0.2, 0), (INF, 4)], 0.2),
        (0.5, [(-INF, 3), (0.0, 3), (INF, 3)], -INF),
    ],
)
def test_special_cases(q: float, buckets: list[tuple[float, float]], expected: float) -> None:
    assert same(histogram_quantile(q, buckets), expected)


def test_order_of_buckets_does_not_matter() -> None:
    assert histogram_quantile(0.8, list(reversed(POSITIVE))) == pytest.approx(0.72)


def test_demo_service_buckets_in_milliseconds() -> None:
    # 100 requests: 90 under 50 ms, 9 between 100 and 150 ms, one over 10 s.
    buckets = [(0.025, 0), (0.05, 90), (0.1, 90), (0.15, 99), (10.0, 99), (INF, 100)]
    assert histogram_quantile(0.5, buckets) * 1000 == pytest.approx(25 + 25 * (50 / 90))
    assert histogram_quantile(0.99, buckets) * 1000 == pytest.approx(150.0)
    assert histogram_quantile(0.999, buckets) == 10.0


# --- property tests against the reference ---

BOUNDS = st.one_of(
    st.sampled_from([0.0, -0.0, 0.005, 0.1, 0.25, 1.0, 10.0, -1.0, -INF, INF]),
    st.floats(min_value=-100, max_value=100, allow_nan=False, allow_infinity=False),
)
COUNTS = st.one_of(
    st.integers(min_value=0, max_value=1000).map(float),
    st.just(0.0),
    st.floats(min_value=0, max_value=1e9, allow_nan=False, allow_infinity=False),
)
QS = st.one_of(
    st.floats(min_value=0, max_value=1),
    st.sampled_from([0.0, 0.5, 0.9, 0.99, 1.0]),
    st.floats(allow_nan=True, allow_infinity=True),
)


@st.composite
def layouts(draw: st.DrawFn) -> list[tuple[float, float]]:
    """Random layouts: duplicates, empty buckets, with or without +Inf, one bucket."""
    buckets = draw(st.lists(st.tuples(BOUNDS, COUNTS), max_size=12))
    if draw(st.booleans()):
        buckets.append((INF, draw(COUNTS)))
    return draw(st.permutations(buckets))


@st.composite
def cumulative_layouts(draw: st.DrawFn) -> list[tuple[float, float]]:
    """Well-formed histograms as a client exposes them (sorted bounds, cumulative)."""
    bounds = sorted(
        set(draw(st.lists(st.floats(0.001, 100, allow_nan=False), min_size=1, max_size=20)))
    )
    per_bucket = draw(st.lists(st.integers(0, 50), min_size=len(bounds), max_size=len(bounds)))
    in_inf = draw(st.integers(0, 50))
    cumulative = list(accumulate(per_bucket))
    return [
        *((b, float(c)) for b, c in zip(bounds, cumulative, strict=True)),
        (INF, float(cumulative[-1] + in_inf)),
    ]


@st.composite
def all_in_inf(draw: st.DrawFn) -> list[tuple[float, float]]:
    bounds = draw(st.lists(BOUNDS.filter(lambda b: b != INF), min_size=0, max_size=5))
    return [*((b, 0.0) for b in bounds), (INF, float(draw(st.integers(0, 100))))]


@settings(deadline=None)
@given(q=QS, buckets=st.one_of(layouts(), cumulative_layouts(), all_in_inf()))
@example(q=0.5, buckets=[(INF, 7.0)])
@example(q=0.5, buckets=[(0.1, 0.0), (INF, 7.0)])
@example(q=0.0, buckets=[(0.1, 0.0), (INF, 7.0)])
@example(q=0.5, buckets=[(0.1, 0.0), (0.2, 0.0), (INF, 0.0)])
@example(q=0.5, buckets=[(1.0, 1e13), (2.0, 1e13 + 1), (INF, 1e13 + 1)])  # precision step
def test_matches_reference(q: float, buckets: list[tuple[float, float]]) -> None:
    assert same(histogram_quantile(q, buckets), reference_quantile(q, buckets))


@settings(deadline=None)
@given(buckets=cumulative_layouts(), q1=st.floats(0, 1), q2=st.floats(0, 1))
def test_monotonic_in_q_and_bounded(
    buckets: list[tuple[float, float]], q1: float, q2: float
) -> None:
    low, high = sorted((q1, q2))
    a, b = histogram_quantile(low, buckets), histogram_quantile(high, buckets)
    if buckets[-1][1] == 0 or (math.isnan(a) and low == 0):
        return
    largest_finite = buckets[-2][0]
    assert 0 <= a <= b * (1 + 1e-12) <= largest_finite * (1 + 1e-12)


# --- latency buckets ----------------------------------------------------------------


BUCKETS = {"0.05": 50.0, "0.1": 80.0, "0.25": 95.0, "0.5": 98.0, "+Inf": 100.0}


@pytest.mark.parametrize(
    ("slo", "expected"),
    [
        (0.1, SloEvents(n=100, slow=20, bound=0.1)),  # a bound at the SLO: exact
        (0.2, SloEvents(n=100, slow=5, bound=0.25)),  # between bounds: the one above
        (0.01, SloEvents(n=100, slow=50, bound=0.05)),
        (0.5, SloEvents(n=100, slow=2, bound=0.5)),
    ],
)
def test_slo_uses_the_smallest_bound_at_or_above_it(slo: float, expected: SloEvents) -> None:
    assert slo_events(BUCKETS, slo) == expected


def test_slo_buckets_by_number_and_non_monotonic_counts() -> None:
    # the 0.25 count was read before a few more requests landed in 0.1 (not atomic)
    buckets = {0.1: 81.0, 0.25: 80.0, math.inf: 100.0}
    assert slo_events(buckets, 0.2) == SloEvents(n=100, slow=19, bound=0.25)


def test_empty_window_has_no_requests() -> None:
    assert slo_events({"0.1": 0, "+Inf": 0}, 0.1) == SloEvents(n=0, slow=0, bound=0.1)


@pytest.mark.parametrize(
    ("buckets", "match"),
    [
        ({"0.1": 5.0, "0.5": 9.0}, r"\+Inf"),
        ({"0.1": 5.0, "+Inf": -1.0}, "non-negative"),
        ({"0.1": 5.0, "+Inf": 9.0, "0.2": 7.0}, "no latency bucket"),
    ],
)
def test_unusable_buckets_are_refused(buckets: dict[str, float], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        slo_events(buckets, 0.3)
