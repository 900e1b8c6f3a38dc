"""Canary against stable over the same window: the two sequential tests the policy reads.

- errors: 5xx responses as events;
- latency: requests slower than max(latency_slo_ms, the stable track's p99 bucket) as
  events, so both a slow canary and a canary slower than an already slow stable
  show up, while scheduler noise on millisecond responses does not.
Pure: measurements in, statistics out; the running e-value maxima travel in the state.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from swiftdeploy.analysis.sequential import sequential_test, slo_events
from swiftdeploy.manifest import Statistics
from swiftdeploy.metrics.base import Measurement

Maxima = Mapping[str, tuple[float, float]]


def stable_p99_bound(buckets: Mapping[str, int]) -> float | None:
    """The upper bound (seconds) of the bucket holding the stable track's p99."""
    pairs = sorted((float(le), count) for le, count in buckets.items())
    if not pairs or pairs[-1][1] <= 0:
        return None
    total = pairs[-1][1]
    for le, count in pairs:
        if count >= 0.99 * total:
            return le
    return None


def compare(
    canary: Measurement,
    stable: Measurement,
    *,
    alpha: float,
    settings: Statistics,
    previous: Maxima,
) -> dict[str, dict[str, Any]]:
    errors = sequential_test(
        canary.requests,
        canary.errors,
        stable.requests,
        stable.errors,
        alpha=alpha,
        tolerance=settings.tolerance,
        margin=settings.margin,
        previous_max_e=previous.get("errors", (1.0, 1.0))[0],
        previous_max_e_no_harm=previous.get("errors", (1.0, 1.0))[1],
    )
    out: dict[str, dict[str, Any]] = {"errors": errors.model_dump(mode="json")}
    slo_s = settings.latency_slo_ms / 1000
    stable_bound = stable_p99_bound(stable.buckets)
    threshold = (
        slo_s if stable_bound is None or stable_bound == float("inf") else max(slo_s, stable_bound)
    )
    try:
        slow_canary = slo_events(canary.buckets, threshold) if canary.buckets else None
        slow_stable = slo_events(stable.buckets, threshold) if stable.buckets else None
    except ValueError:
        slow_canary = slow_stable = None
    latency = sequential_test(
        slow_canary.n if slow_canary else 0,
        slow_canary.slow if slow_canary else 0,
        slow_stable.n if slow_stable else 0,
        slow_stable.slow if slow_stable else 0,
        alpha=alpha,
        tolerance=settings.latency_tolerance,
        margin=settings.margin,
        previous_max_e=previous.get("latency", (1.0, 1.0))[0],
        previous_max_e_no_harm=previous.get("latency", (1.0, 1.0))[1],
    )
    bound = slow_canary.bound if slow_canary else threshold
    out["latency"] = {**latency.model_dump(mode="json"), "slow_above_ms": round(bound * 1000, 3)}
    return out


def maxima(statistics: Mapping[str, Mapping[str, Any]]) -> dict[str, tuple[float, float]]:
    """The running maxima to carry to the next look of the same step."""
    return {
        name: (float(test["max_e_value"]), float(test["max_e_value_no_harm"]))
        for name, test in statistics.items()
    }
