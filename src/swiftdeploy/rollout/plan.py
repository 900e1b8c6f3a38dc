"""What a rollout will take at the traffic the service has now: `rollout --plan`. Pure.

The first step runs until a regression of the size in `policy.detect` would have been
caught with power 1 - beta (the same planning the engine does at every look, from the
stable's recent traffic), or for min_duration if that is longer. Later steps pass on
that evidence after their min_duration (and pause). The no-harm test can pass a good
canary sooner, so these are upper estimates for a healthy release; a bad one is
rolled back as soon as the evidence of harm is in, whatever the plan says.
"""

from __future__ import annotations

from dataclasses import dataclass

from swiftdeploy.manifest import Manifest, Warmup
from swiftdeploy.metrics.base import Measurement
from swiftdeploy.rollout.statistics import (
    Settings,
    latency_bound,
    needed_for_errors,
    needed_for_latency,
)
from swiftdeploy.state.evidence import Counts


@dataclass(frozen=True)
class StepPlan:
    index: int
    weight: int
    canary_rps: float
    needed_requests: int | None  # None: passes on an earlier step's evidence, or cannot plan
    seconds: float | None  # None: cannot be planned
    within_limit: bool  # decided before max_duration (else it holds, and `resume` goes on)


@dataclass(frozen=True)
class Plan:
    service_rps: float
    stable_error_rate: float | None
    steps: tuple[StepPlan, ...]
    notes: tuple[str, ...]  # why something cannot be planned, or a warning

    @property
    def total_s(self) -> float | None:
        times = [step.seconds for step in self.steps]
        return None if any(t is None for t in times) else sum(t or 0.0 for t in times)


def plan(manifest: Manifest, reference: Measurement) -> Plan:
    """The plan for a rollout now, from `reference`: the service's recent traffic (the
    stable track's, before any canary)."""
    settings = Settings.of(manifest.policy)
    stable = Counts.of(reference)
    rps = reference.rps or 0.0
    bound, _ = latency_bound(reference, manifest.policy.detect.latency_ms)
    notes: list[str] = []
    if rps <= 0:
        notes.append(
            f"no requests in the last {reference.elapsed_s or 0:.0f}s: nothing to plan with;"
            " a rollout would hold until traffic comes"
        )
    steps: list[StepPlan] = []
    canary = manifest.strategy.canary
    for index, step in enumerate(canary.steps):
        analysis = canary.analysis_for(step)
        pause = step.pause if isinstance(step.pause, float) else 0.0
        canary_rps = rps * step.weight / 100
        needed: int | None = None
        seconds: float | None = analysis.min_duration + pause
        if index == 0:
            errors = needed_for_errors(stable, step.weight, 0.0, settings)
            latency, why = needed_for_latency(stable, bound, step.weight, 0.0, settings)
            if why:
                notes.append(f"latency: {why}")
            planned = [n for n in (errors, latency) if n is not None]
            needed = max(planned) if planned else None
            if needed is None or canary_rps <= 0:
                seconds = None
            else:
                seconds = (
                    max(
                        analysis.min_duration,
                        _first_step_s(errors, latency, canary.analysis.warmup, canary_rps),
                    )
                    + pause
                )
        warmup = canary.analysis.warmup
        if index == 0 and not warmup.off and canary_rps > 0:
            warm_s = warmup.seconds_at(canary_rps)
            notes.append(
                f"step 1 includes the canary's warm-up ({warmup.describe()}: about"
                f" {_duration(warm_s)} at {canary_rps:.2g} canary req/s), after which its"
                " latency is tested"
            )
        within = seconds is not None and seconds - pause <= analysis.max_duration
        steps.append(StepPlan(index, step.weight, canary_rps, needed, seconds, within))
        if index == 0 and not within and seconds is not None:
            notes.append(
                f"traffic is too low to decide step 1 within max_duration "
                f"({analysis.max_duration:g}s): it needs about {needed} canary requests, "
                f"{_duration(seconds)} at {canary_rps:.2g} req/s; the rollout will hold "
                "with an estimate and `swiftdeploy resume` keeps collecting. To decide "
                "sooner: more traffic (analysis.load), a larger first weight, a larger "
                "policy.detect.errors, or a larger policy.beta"
            )
    rate = reference.error_rate
    return Plan(service_rps=rps, stable_error_rate=rate, steps=tuple(steps), notes=tuple(notes))


def _first_step_s(
    errors: int | None, latency: int | None, warmup: Warmup, canary_rps: float
) -> float:
    """The first step's time at this canary rate: errors count from the first request;
    latency only after the warm-up (its time and its requests, whichever is later)."""
    warm_s = warmup.seconds_at(canary_rps)
    times = [0.0]
    if errors is not None:
        times.append(errors / canary_rps)
    if latency is not None:
        times.append(warm_s + latency / canary_rps)
    return max(times)


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f}s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
