"""One look at a step, as pure functions over the evidence ledger: the counting and
assessing that any driver of a sequential analysis does the same way (the rollout
engine with its own metrics provider; the judge, `swiftdeploy.judge`, for another
controller's rollout). I/O (reading a provider, saving the ledger) stays with the
caller, which hands in what it measured.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Literal

from swiftdeploy.manifest import Policy
from swiftdeploy.metrics.base import Measurement, summarize
from swiftdeploy.rollout.statistics import (
    Settings,
    Statistics,
    assess,
    latency_bound,
    passed_dimensions,
)
from swiftdeploy.state.evidence import Counts, Evidence, Increment

Track = Literal["canary", "stable"]
TRACKS: tuple[Track, ...] = ("canary", "stable")


def opened_evidence(
    reference: Measurement, history: Iterable[Increment], policy: Policy
) -> Evidence:
    """An empty ledger for a new rollout: the latency bound from the stable's recent
    traffic (`reference`, read before any canary request counts) and the stable's
    spread seeded from its past blocks (`history`)."""
    bound, how = latency_bound(reference, policy.detect.latency_ms)
    evidence = Evidence(
        latency_bound_s=bound,
        latency_reference=how,
        reference_rps=reference.rps,
        p99_limit_s=policy.thresholds.max_p99_ms / 1000,
    )
    return evidence.with_history("stable", history)


def counted_look(
    evidence: Evidence, latest: Mapping[Track, Measurement | None], settings: Settings
) -> tuple[Evidence, Statistics]:
    """The ledger with this look's increments counted (a provider error counts
    nothing: its time is counted at the next look that reads), the statistics of the
    current step, and the dimensions passed so far kept in the ledger."""
    for track in TRACKS:
        measured = latest.get(track)
        if measured is not None and measured.status != "provider_error":
            evidence = evidence.counted(track, measured)
    statistics = assess(evidence, settings)
    return evidence.looked(passed_dimensions(statistics)), statistics


def step_summary(
    track: Track,
    provider: str,
    counts: Counts,
    start: float,
    end: float,
    latest: Measurement | None,
) -> Measurement:
    """A step's counts so far as one measurement (what the policy reads); a look whose
    reading failed makes it a provider error, so the policy holds."""
    measurement = summarize(
        track=track,
        provider=provider,
        window_start=start,
        window_end=max(end, start),
        requests=counts.requests,
        errors=counts.errors,
        buckets=counts.buckets,
        detail=latest.detail if latest is not None else "first reading of the step",
    )
    if latest is not None and latest.status == "provider_error":
        return measurement.model_copy(update={"status": "provider_error"})
    return measurement
