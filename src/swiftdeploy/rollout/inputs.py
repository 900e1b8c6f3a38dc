"""Policy inputs, built from measurements: pure functions, no IO (docs/policy-input.md)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from swiftdeploy.hostfacts import HostFacts
from swiftdeploy.manifest import Analysis, Policy, Thresholds
from swiftdeploy.metrics.base import Measurement
from swiftdeploy.state.model import HookAnswer

if TYPE_CHECKING:  # scipy, through the statistics: not for a type
    from swiftdeploy.rollout.statistics import Statistics


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


def canary_input(
    *,
    policy: Policy,
    analysis: Analysis,
    step_index: int,
    weight: int,
    elapsed_s: float,
    canary: Measurement,
    stable: Measurement,
    canary_healthy: bool,
    statistics: Statistics,
    hooks: Mapping[str, HookAnswer] | None = None,
) -> dict[str, Any]:
    return {
        "thresholds": policy.thresholds.model_dump(),
        "alpha": policy.alpha,
        "beta": policy.beta,
        "detect": {
            "errors": policy.detect.errors.text,
            "latency_ms": policy.detect.latency_ms,
        },
        "step": {
            "index": step_index,
            "weight": weight,
            "elapsed_s": round(elapsed_s, 3),
            "min_duration_s": analysis.min_duration,
            "max_duration_s": analysis.max_duration,
        },
        "canary": track_input(canary, canary_healthy),
        "stable": track_input(stable, True),
        "statistics": statistics,
        "hooks": hooks_input(hooks or {}),
    }


def hooks_input(hooks: Mapping[str, HookAnswer]) -> dict[str, dict[str, Any]]:
    """The hooks' latest answers in this rollout, by name (`input.hooks.<name>`)."""
    return {
        name: {
            "type": answer.type,
            "ok": answer.ok,
            "status": answer.status,
            "answer": answer.answer,
            "at": answer.at,
            "step": answer.step,
        }
        for name, answer in hooks.items()
    }


def infrastructure_input(action: str, thresholds: Thresholds, host: HostFacts) -> dict[str, Any]:
    return {
        "action": action,
        "thresholds": thresholds.model_dump(),
        "host": host.model_dump(),
    }
