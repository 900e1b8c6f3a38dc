"""Classic (`le`) histogram buckets: `histogram_quantile` as Prometheus computes it, and
`slo_events`, the requests slower than a bound. Pure Python: no numpy, so the state
model and the CLI's start-up never pay for it.

`histogram_quantile`:

A line-by-line port of `bucketQuantile` and its helpers `coalesceBuckets`,
`correctPrecisionErrors` and `ensureMonotonic` from prometheus/prometheus
`promql/quantile.go` at commit 01381a80115bde3f6dbb392123980d0bfadf49af (read through
the code search corpus). The precision step came with prometheus/prometheus PR #13153
(Nov 2023); older releases, e.g. the file at commit 8035c04624fb04cea53609fdb837e85d3bf2b869,
lack it. It only touches a bucket whose relative step from the previous one is at most
1e-12, which integer counts below 10^12 never are, so for request counts both
versions give the same answer.

The Go code relies on IEEE float arithmetic (x/0 is +-Inf, 0/0 is NaN); Python raises
on float division by zero, so `_go_div` restores Go's results. `_go_search` is Go's
`sort.Search`, copied so that even inputs with NaN counts pick the same bucket.
Bounds that are NaN are undefined in Prometheus too ("We don't expect the bucket
boundary to be a NaN"); don't pass them.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from typing import NamedTuple

# correctPrecisionErrors(buckets, 1e-12) in bucketQuantile.
PRECISION_TOLERANCE = 1e-12


def histogram_quantile(q: float, buckets: Iterable[tuple[float, float]]) -> float:
    """The q-quantile of cumulative `(upper_bound, count)` buckets, in the bounds' unit.

    Order does not matter and duplicate bounds are summed. Like Prometheus:
    NaN if q is NaN, -Inf if q < 0, +Inf if q > 1; NaN without a +Inf bucket, with
    fewer than two distinct bounds, or with no observations. A quantile in the +Inf
    bucket is the upper bound of the bucket below it. The lowest bucket interpolates
    from 0 when its upper bound is above 0 and is its upper bound otherwise.
    An empty input (a panic in Go, which never calls it so) is NaN.
    """
    if math.isnan(q):
        return math.nan
    if q < 0:
        return -math.inf
    if q > 1:
        return math.inf
    ordered = sorted(((float(bound), float(count)) for bound, count in buckets), key=_bound)
    if not ordered or not (math.isinf(ordered[-1][0]) and ordered[-1][0] > 0):
        return math.nan

    bounds, counts = _coalesce(ordered)
    _correct_precision_errors(counts, PRECISION_TOLERANCE)
    _ensure_monotonic(counts)

    if len(bounds) < 2:
        return math.nan
    observations = counts[-1]
    if observations == 0:
        return math.nan
    rank = q * observations
    b = _go_search(len(counts) - 1, lambda i: counts[i] >= rank)

    if b == len(counts) - 1:
        return bounds[-2]
    if b == 0 and bounds[0] <= 0:
        return bounds[0]
    bucket_start = 0.0
    bucket_end = bounds[b]
    count = counts[b]
    if b > 0:
        bucket_start = bounds[b - 1]
        count -= counts[b - 1]
        rank -= counts[b - 1]
    return bucket_start + (bucket_end - bucket_start) * _go_div(rank, count)


def _bound(bucket: tuple[float, float]) -> float:
    return bucket[0]


def _coalesce(ordered: list[tuple[float, float]]) -> tuple[list[float], list[float]]:
    """coalesceBuckets: merge buckets with the same upper bound (input sorted)."""
    bounds = [ordered[0][0]]
    counts = [ordered[0][1]]
    for bound, count in ordered[1:]:
        if bound == bounds[-1]:
            counts[-1] += count
        else:
            bounds.append(bound)
            counts.append(count)
    return bounds, counts


def _correct_precision_errors(counts: list[float], tolerance: float) -> None:
    """correctPrecisionErrors: flatten steps too small to be anything but float error."""
    prev = counts[0]
    for i in range(1, len(counts)):
        curr = counts[i]
        delta = abs(curr - prev)
        if delta == 0:
            continue
        if _go_div(delta, curr) <= tolerance:
            counts[i] = prev
        else:
            prev = curr


def _ensure_monotonic(counts: list[float]) -> None:
    """ensureMonotonic: raise every count to the running maximum (the "envelope")."""
    top = counts[0]
    for i in range(1, len(counts)):
        if counts[i] > top:
            top = counts[i]
        elif counts[i] < top:
            counts[i] = top


def _go_search(n: int, predicate: Callable[[int], bool]) -> int:
    """Go's sort.Search: the smallest i in [0, n) with predicate(i), else n."""
    low, high = 0, n
    while low < high:
        middle = (low + high) // 2
        if not predicate(middle):
            low = middle + 1
        else:
            high = middle
    return low


def _go_div(numerator: float, denominator: float) -> float:
    """IEEE 754 division as Go does it: no exception on a zero denominator."""
    if denominator != 0 or math.isnan(denominator):
        return numerator / denominator
    if numerator == 0 or math.isnan(numerator):
        return math.nan
    return math.copysign(math.inf, numerator) * math.copysign(1.0, denominator)


class SloEvents(NamedTuple):
    """Requests and slow requests from one window of a latency histogram."""

    n: int
    slow: int
    bound: float  # the bucket bound used as the SLO, in the buckets' unit


def slo_events(buckets: Mapping[str, float] | Mapping[float, float], slo: float) -> SloEvents:
    """Requests and requests slower than the SLO from one window's cumulative buckets.

    `buckets` maps each upper bound `le` (a number, or its text as exposed: "0.25",
    "+Inf") to the cumulative count increase over the window, like
    `Measurement.buckets`; `slo` is in the same unit as the bounds (seconds for
    Prometheus histograms). A histogram only knows that a request took at most `le`,
    so the SLO becomes the smallest bound le >= slo, and "slow" means "above that
    bound": every request counted slow is certainly slower than the SLO, and requests
    between the SLO and that bound count as fast. Rounding this way can hide a
    regression that lives only inside that bucket but never raises a false alarm;
    put a bucket bound at the SLO to make it exact. Counts are made monotonic the
    way Prometheus's histogram_quantile does (a running maximum), since the buckets
    of one scrape are not read atomically. Raises ValueError without a +Inf bucket,
    with negative counts, or when no finite bound reaches the SLO (nothing could
    ever count as slow).
    """
    pairs = sorted((float(le), float(count)) for le, count in buckets.items())
    if not pairs or not math.isinf(pairs[-1][0]):
        raise ValueError("latency buckets need a +Inf bucket")
    if any(count < 0 or math.isnan(count) for _, count in pairs):
        raise ValueError("latency bucket counts must be non-negative")
    running = 0.0
    monotonic: list[tuple[float, float]] = []
    for le, count in pairs:
        running = max(running, count)
        monotonic.append((le, running))
    total = round(monotonic[-1][1])
    for le, count in monotonic[:-1]:
        if le >= slo:
            return SloEvents(n=total, slow=max(total - round(count), 0), bound=le)
    raise ValueError(f"no latency bucket bound at or above the SLO {slo:g}; add one at the SLO")
