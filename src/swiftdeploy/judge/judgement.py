"""The judgement, as pure functions: one sequential analysis per (controller,
namespace, rollout, revision), whose evidence ledger (`state.evidence.Evidence`) adds
up over every call and every step, however often the controller calls. Each call is
one look of the rollout engine's kind (`rollout.looking`): what each track served
since the previous call is counted into the current step, the step is assessed
(`rollout.statistics`), and the canary policy's input is built as the engine builds
it (`rollout.inputs.canary_input`). So the false-rollback bound holds per analysis,
as it does per rollout (docs/decisions.md). Measuring and asking the policy are the
caller's (`judge.service`)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from swiftdeploy.judge.config import Controller
from swiftdeploy.manifest import Analysis, Policy
from swiftdeploy.metrics.base import Measurement
from swiftdeploy.rollout.inputs import canary_input
from swiftdeploy.rollout.looking import TRACKS, Track, counted_look, step_summary
from swiftdeploy.rollout.statistics import Settings, Statistics
from swiftdeploy.state.evidence import Evidence, StepLedger


@dataclass(frozen=True)
class Call:
    """What a controller asked about: which analysis, which step, who asked."""

    controller: Controller
    namespace: str
    name: str
    revision: str
    stable: str  # Argo: the stable pod-template hash; Flagger: the stable workload
    canary: str
    caller: str
    step: str | None = None  # the caller's name for its step, when it sends one
    weight: int | None = None  # the canary's weight, when the caller knows it
    hook: str | None = None  # Flagger's webhook type

    @property
    def key(self) -> str:
        """The analysis: one per rollout revision, whatever the step or the call."""
        return f"{self.controller}/{self.namespace}/{self.name}/{self.revision}"


def file_name(key: str) -> str:
    """A file name for an analysis key (which holds slashes and caller text)."""
    return hashlib.sha256(key.encode()).hexdigest()[:32] + ".json"


class Run(BaseModel):
    """One analysis as persisted between calls."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    key: str
    controller: Controller
    namespace: str
    name: str
    revision: str
    stable: str
    canary: str
    created_at: float
    updated_at: float
    step_key: str | None = None  # the caller's step (or weight) the current step is
    step_started_at: float
    weight_known: bool = False  # False: the weight is the step's observed canary share
    next_step: bool = False  # Flagger confirmed a traffic increase: a new step comes
    looks: int = Field(default=0, ge=0)
    evidence: Evidence
    last_verdict: str | None = None


def step_key(call: Call) -> str | None:
    """What tells one step of the caller's from the next: its step, else its weight."""
    if call.step is not None:
        return f"step {call.step}"
    if call.weight is not None:
        return f"weight {call.weight}"
    return None


def opened(call: Call, evidence: Evidence, analysis: Analysis, now: float) -> Run:
    """A new analysis: its ledger (the latency bound and the stable's spread already in
    `evidence`), the canary's warm-up from now, and its first step."""
    warmup = analysis.warmup
    evidence = evidence.warm_up(now, warmup.time, warmup.requests)
    return Run(
        key=call.key,
        controller=call.controller,
        namespace=call.namespace,
        name=call.name,
        revision=call.revision,
        stable=call.stable,
        canary=call.canary,
        created_at=now,
        updated_at=now,
        step_key=step_key(call),
        step_started_at=now,
        weight_known=call.weight is not None,
        evidence=evidence.open_step(0, call.weight or 0, now),
    )


def with_step(run: Run, call: Call, now: float) -> Run:
    """The run at the call's step: a new step when the caller moved on (another step or
    weight, or Flagger's confirmed traffic increase), else the same. A new step's
    counts start at the next readings; earlier steps' evidence carries on."""
    key = step_key(call)
    moved = run.next_step or (key is not None and key != run.step_key)
    if not moved:
        return run
    current = run.evidence.current
    index = current.index + 1 if current is not None else 0
    return run.model_copy(
        update={
            "step_key": key,
            "step_started_at": now,
            "weight_known": call.weight is not None,
            "next_step": False,
            "evidence": run.evidence.open_step(index, call.weight or 0, now),
        }
    )


def marked(run: Run, marks: dict[Track, float | None]) -> Run:
    """Readings to count from, for tracks that have none yet (a new step's)."""
    evidence = run.evidence
    for track, at in marks.items():
        if at is not None and track not in evidence.marks:
            evidence = evidence.marked(track, at)
    return run.model_copy(update={"evidence": evidence})


@dataclass(frozen=True)
class Judged:
    """One look: the run with its counts, and what the policy is asked."""

    run: Run
    canary: Measurement
    stable: Measurement
    statistics: Statistics
    policy_input: dict[str, Any]


def judge_look(
    run: Run,
    latest: dict[Track, Measurement | None],
    now: float,
    policy: Policy,
    analysis: Analysis,
    provider: str,
) -> Judged:
    """Count this look into the current step and build the canary policy's input."""
    evidence, statistics = counted_look(
        _observed_weight(run.evidence, run.weight_known, latest),
        latest,
        Settings.of(policy),
    )
    step = evidence.current
    assert step is not None  # an analysis opens its first step
    started = run.step_started_at
    # a step's first call spans no time yet: its (empty) summary must not read as a
    # clock that went back
    end = max(now, started + 0.001)
    summaries = {
        track: step_summary(track, provider, getattr(step, track), started, end, latest[track])
        for track in TRACKS
    }
    policy_input = canary_input(
        policy=policy,
        analysis=analysis,
        step_index=step.index,
        weight=step.weight,
        elapsed_s=max(now - started, 0.0),
        canary=summaries["canary"],
        stable=summaries["stable"],
        canary_healthy=True,  # the controller watches its pods' health itself
        statistics=statistics,
    )
    updated = run.model_copy(
        update={"evidence": evidence, "looks": run.looks + 1, "updated_at": now}
    )
    return Judged(updated, summaries["canary"], summaries["stable"], statistics, policy_input)


def _observed_weight(
    evidence: Evidence, known: bool, latest: dict[Track, Measurement | None]
) -> Evidence:
    """When the caller does not say the canary's weight (Flagger never does), the
    step's observed canary share (this look's counts included) stands for it: it only
    plans the power (how many canary requests a pass needs); the harm tests use the
    counts themselves."""
    step = evidence.current
    if known or step is None:
        return evidence
    served = {
        track: getattr(step, track).requests
        + (m.requests if (m := latest.get(track)) and m.status != "provider_error" else 0)
        for track in TRACKS
    }
    total = served["canary"] + served["stable"]
    weight = min(max(round(100 * served["canary"] / total), 1), 99) if total else 0
    if weight == step.weight:
        return evidence
    updated: StepLedger = step.model_copy(update={"weight": weight})
    return evidence.model_copy(update={"steps": (*evidence.steps[:-1], updated)})


def answer_track(measurement: Measurement) -> dict[str, Any]:
    """A track as the answer shows it: the step's counts so far."""
    return {
        "status": measurement.status,
        "requests": measurement.requests,
        "errors": measurement.errors,
        "error_rate": measurement.error_rate,
        "p99_ms": measurement.latency_ms(0.99),
    }
