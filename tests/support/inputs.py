"""Canary policy inputs made the way the engine makes them: a hand-written evidence
ledger through `rollout.statistics.assess` and `rollout.inputs.canary_input`, so the
policy tests always speak the contract the CLI speaks (docs/policy-input.md)."""

from __future__ import annotations

from typing import Any

from swiftdeploy.manifest import Analysis, Policy
from swiftdeploy.metrics.base import Measurement, summarize
from swiftdeploy.rollout.inputs import canary_input
from swiftdeploy.rollout.statistics import Settings, assess
from swiftdeploy.state.evidence import Counts, Dimension, Evidence, PassedBy, StepLedger

LATENCY_BOUND_S = 0.15  # stable p99 in (50, 75] ms: 50 ms + detect.latency 100 ms
STARTED = 1_000_000.0


def counts(requests: int, errors: int = 0, slow: int = 0) -> Counts:
    """A track's counts: `slow` requests between 0.2 s and 0.5 s, the rest under 50 ms."""
    fast = requests - slow
    return Counts(
        requests=requests,
        errors=errors,
        buckets={"0.05": fast, "0.2": fast, "0.5": requests, "+Inf": requests},
    )


def ledger(
    canary: Counts,
    stable: Counts,
    *,
    weight: int = 20,
    elapsed_s: float = 40.0,
    passed: dict[Dimension, PassedBy] | None = None,
    earlier: tuple[StepLedger, ...] = (),
) -> Evidence:
    step = StepLedger(
        index=len(earlier),
        weight=weight,
        started_at=STARTED,
        canary=canary,
        stable=stable,
        observed_s=elapsed_s,
        passed=passed or {},
    )
    return Evidence(latency_bound_s=LATENCY_BOUND_S, steps=(*earlier, step))


def step_measurement(track: str, track_counts: Counts, elapsed_s: float) -> Measurement:
    """A step's counts so far as a Measurement, as the engine summarises them."""
    return summarize(
        track=track,
        provider="nginx",
        window_start=STARTED,
        window_end=STARTED + elapsed_s,
        requests=track_counts.requests,
        errors=track_counts.errors,
        buckets=track_counts.buckets,
    )


def policy_input(
    evidence: Evidence,
    *,
    policy: Policy | None = None,
    elapsed_s: float = 40.0,
    healthy: bool = True,
    statuses: dict[str, str] | None = None,
) -> dict[str, Any]:
    """The canary input for the current step of `evidence`, as the engine builds it."""
    chosen = policy or Policy()
    step = evidence.current
    assert step is not None
    tracks = {}
    for name, track_counts in (("canary", step.canary), ("stable", step.stable)):
        measured = step_measurement(name, track_counts, elapsed_s)
        status = (statuses or {}).get(name)
        if status == "provider_error":
            measured = measured.model_copy(
                update={"status": "provider_error", "detail": "nginx did not answer"}
            )
        tracks[name] = measured
    return canary_input(
        policy=chosen,
        analysis=Analysis(),
        step_index=step.index,
        weight=step.weight,
        elapsed_s=elapsed_s,
        canary=tracks["canary"],
        stable=tracks["stable"],
        canary_healthy=healthy,
        statistics=assess(evidence, Settings.of(chosen)),
    )


def promotable() -> dict[str, Any]:
    """A step that has earned promotion: enough clean traffic for 90% power."""
    return policy_input(ledger(counts(3000, 15, 3), counts(12000, 60, 12)))


def harmful() -> dict[str, Any]:
    """A step whose canary fails 5% of requests against the stable's 0.3%."""
    return policy_input(ledger(counts(412, 21), counts(1650, 5)))


def undecided() -> dict[str, Any]:
    """A healthy step without enough traffic yet for either a pass or harm."""
    return policy_input(ledger(counts(300, 1), counts(1200, 6)))
