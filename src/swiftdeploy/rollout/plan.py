"""What a rollout will take at the traffic the service has now: `rollout --plan`. Pure.

The first step runs until a regression of the size in `policy.detect` would have been
caught with power 1 - beta (the same planning the engine does at every look, from the
stable's recent traffic), or for min_duration if that is longer. Later steps pass on
that evidence after their min_duration (and pause). The no-harm test can pass a good
canary sooner, so these are upper estimates for a healthy release; a bad one is
rolled back as soon as the evidence of harm is in, whatever the plan says.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass

from swiftdeploy.durations import format_duration
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
    max_duration_s: float = 0.0

    @property
    def needed_text(self) -> str:
        """What `--plan`'s column of canary requests needed says for this step."""
        if self.needed_requests:
            return str(self.needed_requests)
        if self.index > 0:
            return "- (earlier step's)"
        return "- (no traffic)" if self.canary_rps <= 0 else "cannot plan"


@dataclass(frozen=True)
class Plan:
    service_rps: float
    stable_error_rate: float | None
    steps: tuple[StepPlan, ...]
    notes: tuple[str, ...]  # why something cannot be planned, or a warning
    window_s: float = 0.0  # how far back the service's traffic was read

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
    steps: list[StepPlan] = []
    canary = manifest.strategy.canary
    for index, step in enumerate(canary.steps):
        analysis = canary.analysis_for(step)
        pause = step.pause if isinstance(step.pause, float) else 0.0
        # the step's own load generator (analysis.load) adds to the service's traffic
        generated = analysis.load.rps if analysis.load is not None else 0.0
        canary_rps = (rps + generated) * step.weight / 100
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
                f" {format_duration(warm_s)} at {canary_rps:.2g} canary req/s), after which its"
                " latency is tested"
            )
        within = seconds is not None and seconds - pause <= analysis.max_duration
        steps.append(
            StepPlan(index, step.weight, canary_rps, needed, seconds, within, analysis.max_duration)
        )
    rate = reference.error_rate
    found = Plan(
        service_rps=rps,
        stable_error_rate=rate,
        steps=tuple(steps),
        notes=tuple(notes),
        window_s=reference.elapsed_s or 0.0,
    )
    # the same words `rollout` warns with as it starts
    return dataclasses.replace(found, notes=(*early_warnings(found), *notes))


def early_warnings(found: Plan, now: float | None = None) -> list[str]:
    """What to say as a rollout starts when its traffic cannot decide step 1 within
    max_duration: the rate seen, how long step 1 would take, and when it will hold
    (a clock time when `now` is given). Empty when step 1 is decided in time."""
    if not found.steps or found.steps[0].within_limit:
        return []
    first = found.steps[0]
    if found.service_rps <= 0 < first.canary_rps:
        # only the step's own load will bring traffic: nothing to plan from yet, and
        # nothing to warn of (the load decides it)
        return []
    limit = format_duration(first.max_duration_s)
    at = f", at {_clock(now + first.max_duration_s)}" if now is not None else ""
    when = f"in {limit}{at}"
    holds = f"it holds at max_duration ({when}) with the canary at {first.weight}%"
    span = format_duration(found.window_s)
    if found.service_rps <= 0 and first.canary_rps <= 0:
        return [
            f"no requests to the service in the last {span}: the canary gets none at"
            f" {first.weight}%, so step 1 cannot pass; {holds}. Send traffic (or set"
            " analysis.load) to decide it"
        ]
    seen = (
        f"{found.service_rps:.2g} req/s to the service in the last {span}"
        f" ({first.canary_rps:.2g} canary req/s at {first.weight}%)"
    )
    if first.needed_requests is None or first.seconds is None:
        return [f"{seen}: step 1 cannot be planned at this traffic; {holds}"]
    return [
        f"only {seen}: step 1 needs up to about {first.needed_requests:,} canary requests,"
        f" about {format_duration(first.seconds)} (a healthy canary may pass sooner); {holds}"
        " if still undecided. To decide sooner: more traffic (analysis.load), a larger first"
        " weight, a larger policy.detect.errors, or a larger policy.beta"
    ]


def later_steps_s(manifest: Manifest, index: int) -> tuple[float, bool]:
    """The least time the steps after step `index` take (each passes on the earlier
    steps' evidence after its min_duration, then its timed pause), and whether one of
    them waits for `promote`."""
    canary = manifest.strategy.canary
    seconds, manual = 0.0, False
    for step in canary.steps[index + 1 :]:
        manual = manual or step.pause == "manual"
        pause = step.pause if isinstance(step.pause, float) else 0.0
        seconds += canary.analysis_for(step).min_duration + pause
    return seconds, manual


def _clock(at: float) -> str:
    return time.strftime("%H:%M", time.localtime(at))


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
