"""Policy inputs, built from measurements: pure functions, no IO (docs/policy-input.md)."""

from __future__ import annotations

from typing import Any

from swiftdeploy.hostfacts import HostFacts
from swiftdeploy.manifest import Analysis, Thresholds
from swiftdeploy.metrics.base import Measurement


def track_input(measurement: Measurement, healthy: bool) -> dict[str, Any]:
    return {
        "status": measurement.status,
        "detail": measurement.detail,
        "requests": measurement.requests,
        "errors": measurement.errors,
        "error_rate": measurement.error_rate,
        "p50_ms": measurement.latency_ms(0.5),
        "p90_ms": measurement.latency_ms(0.9),
        "p99_ms": measurement.latency_ms(0.99),
        "healthy": healthy,
    }


def thresholds_input(thresholds: Thresholds, analysis: Analysis | None = None) -> dict[str, Any]:
    data = thresholds.model_dump()
    if analysis is not None and analysis.min_requests is not None:
        data["min_requests"] = analysis.min_requests
    return data


def canary_input(
    *,
    thresholds: Thresholds,
    alpha: float,
    analysis: Analysis,
    step_index: int,
    weight: int,
    elapsed_s: float,
    canary: Measurement,
    stable: Measurement,
    canary_healthy: bool,
    statistics: dict[str, dict[str, Any]],
) -> dict[str, Any]:
    return {
        "thresholds": thresholds_input(thresholds, analysis),
        "alpha": alpha,
        "step": {
            "index": step_index,
            "weight": weight,
            "elapsed_s": round(elapsed_s, 3),
            "min_duration_s": analysis.min_duration,
            "max_duration_s": analysis.max_duration,
            "on_timeout": analysis.on_timeout,
        },
        "canary": track_input(canary, canary_healthy),
        "stable": track_input(stable, True),
        "statistics": statistics,
    }


def infrastructure_input(action: str, thresholds: Thresholds, host: HostFacts) -> dict[str, Any]:
    return {
        "action": action,
        "thresholds": thresholds_input(thresholds),
        "host": host.model_dump(),
    }
