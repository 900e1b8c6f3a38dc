"""The rollout's evidence ledger: what each track served in each step, as counted.

The engine adds each look's increment (what a track served since the previous look)
to the current step, so a step's counts are cumulative from its start however long
it runs, across holds, retries and restarts of the CLI, without asking a metrics
provider to keep a step's whole history (no sliding window). Traffic that nobody
measured (the CLI was not running and the provider's history had moved on) is
skipped and its length noted: leaving out data chosen without looking at it keeps
the sequential tests valid. Persisted with the state; pure updates only.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Literal, NamedTuple, Protocol

from pydantic import BaseModel, ConfigDict, Field, model_validator

from swiftdeploy.durations import format_duration
from swiftdeploy.stats.dispersion import BLOCK_S, Dispersion
from swiftdeploy.stats.quantile import slo_events

Dimension = Literal["errors", "latency"]
DIMENSIONS: tuple[Dimension, ...] = ("errors", "latency")
# The events whose look-to-look spread each track keeps (stats.dispersion): failed
# requests (the errors and error_rate tests), requests slower than the latency bound,
# and (the canary's) slower than max_p99_ms.
Spread = Literal["errors", "latency", "p99"]
TrackName = Literal["canary", "stable"]
# How a dimension of a step passed: the harm test had the power, the no-harm test
# said so, an earlier step of this rollout did either, or a person promoted by hand.
PassedBy = Literal["power", "no_harm", "earlier_step", "hand"]


class Slow(NamedTuple):
    """Requests slower than a bound, as a histogram counts them: `slow` of `requests`
    took longer than `bound_s`, the smallest bucket bound at or above the one asked."""

    slow: int
    requests: int
    bound_s: float


class Arms(NamedTuple):
    """One step's events (failed or slow requests) among the requests of each arm, as
    the canary-against-stable tests count them; `bound_s`: what slow meant, if slow."""

    canary_events: int
    canary_n: int
    stable_events: int
    stable_n: int
    bound_s: float | None = None


class Increment(Protocol):
    """What one look measured of one track (a `metrics.base.Measurement` is one): the
    state keeps counts, and does not depend on where they were measured."""

    @property
    def requests(self) -> int: ...
    @property
    def errors(self) -> int: ...
    @property
    def buckets(self) -> dict[str, int]: ...
    @property
    def window_start(self) -> float | None: ...
    @property
    def window_end(self) -> float | None: ...


class Counts(BaseModel):
    """One track's requests, 5xx responses and latency histogram over some span."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    requests: int = Field(default=0, ge=0)
    errors: int = Field(default=0, ge=0)
    buckets: dict[str, int] = Field(default_factory=dict)  # cumulative by le, in seconds

    @classmethod
    def of(cls, measurement: Increment) -> Counts:
        """A measurement's counts (a look's increment, or a reference window)."""
        return cls(
            requests=measurement.requests, errors=measurement.errors, buckets=measurement.buckets
        )

    def merged(self, other: Counts) -> Counts:
        buckets = dict(self.buckets)
        for le, count in other.buckets.items():
            buckets[le] = buckets.get(le, 0) + count
        return Counts(
            requests=self.requests + other.requests,
            errors=self.errors + other.errors,
            buckets=buckets,
        )

    def minus(self, other: Counts) -> Counts:
        """These counts without `other`, a part of them (what was counted while warming)."""
        buckets = {le: count - other.buckets.get(le, 0) for le, count in self.buckets.items()}
        return Counts(
            requests=self.requests - other.requests,
            errors=self.errors - other.errors,
            buckets=buckets,
        )

    def slower_than(self, bound_s: float | None) -> Slow | None:
        """The requests slower than `bound_s` (the one home of that count); None without
        a bound or a usable histogram (no +Inf bucket, or no bound that high)."""
        if bound_s is None or not self.buckets:
            return None
        try:
            events = slo_events(self.buckets, bound_s)
        except ValueError:
            return None
        return Slow(events.slow, events.n, events.bound)


class StepLedger(BaseModel):
    """One step's counts from its start, and how each dimension passed (sticky)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    index: int = Field(ge=0)
    weight: int = Field(ge=0, le=100)
    started_at: float
    canary: Counts = Field(default_factory=Counts)
    stable: Counts = Field(default_factory=Counts)
    observed_s: float = Field(default=0.0, ge=0)  # time covered by counted canary increments
    looks: int = Field(default=0, ge=0)
    passed: dict[Dimension, PassedBy] = Field(default_factory=dict)
    # The part of `canary` and `stable` counted while the canary warmed up (both tracks
    # over the same looks, so the latency comparison keeps its traffic share).
    canary_warming: Counts = Field(default_factory=Counts)
    stable_warming: Counts = Field(default_factory=Counts)

    @model_validator(mode="before")
    @classmethod
    def _without_burst_caps(cls, data: Any) -> Any:
        """A ledger written with the per-look burst caps (before the dispersion) still
        loads, so a held or paused rollout survives the upgrade; its caps are dropped."""
        if isinstance(data, dict):
            return {key: value for key, value in data.items() if key != "harm_events"}
        return data

    def latency_counts(self, track: Literal["canary", "stable"]) -> Counts:
        """What the latency tests see of a track: its counts less the warm-up's."""
        warming: Counts = getattr(self, f"{track}_warming")
        counts: Counts = getattr(self, track)
        return counts.minus(warming) if warming.requests else counts

    def errors(self) -> Arms:
        """The failed requests of each arm in this step."""
        return Arms(
            self.canary.errors, self.canary.requests, self.stable.errors, self.stable.requests
        )

    def slow(self, bound_s: float | None) -> Arms | None:
        """The requests of each arm slower than `bound_s` in this step, the warm-up left
        out; None without a bound or a usable histogram on either arm."""
        canary = self.latency_counts("canary").slower_than(bound_s)
        stable = self.latency_counts("stable").slower_than(bound_s)
        if canary is None or stable is None:
            return None
        return Arms(canary.slow, canary.requests, stable.slow, stable.requests, canary.bound_s)


class WarmupProgress(BaseModel):
    """The canary's warm-up: fixed when the canary (re)starts, done once both the time
    and the canary requests have passed (counted at looks, so decided by time and
    counts only, never by what the latencies were)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    since: float  # when the canary's replicas (re)started
    time_s: float = Field(ge=0)
    requests_needed: int = Field(ge=0)
    requests: int = Field(default=0, ge=0)  # canary requests counted since
    done_at: float | None = None

    @property
    def done(self) -> bool:
        return self.done_at is not None

    def left(self, now: float) -> tuple[float, int]:
        """(seconds, canary requests) still to go; zeros once done."""
        if self.done:
            return 0.0, 0
        return max(self.time_s - (now - self.since), 0.0), max(
            self.requests_needed - self.requests, 0
        )

    def describe_left(self, now: float) -> str:
        seconds, requests = self.left(now)
        parts = []
        if seconds > 0:
            parts.append(format_duration(seconds))
        if requests > 0:
            parts.append(f"{requests} canary requests")
        return " and ".join(parts) or "ends at the next look"


class Evidence(BaseModel):
    """Every step of one rollout (the last one is current) and where counting resumes."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    # The latency comparison counts requests slower than this (stable p99 + detect.latency).
    latency_bound_s: float | None = None
    latency_reference: str = ""  # how the bound was chosen, for the record
    # Requests per second to the service before the canary started: the first looks'
    # pace until the step has a canary rate of its own.
    reference_rps: float | None = Field(default=None, ge=0)
    steps: tuple[StepLedger, ...] = ()
    marks: dict[str, float] = Field(default_factory=dict)  # track -> the next increment's start

    @model_validator(mode="before")
    @classmethod
    def _without_burst_rates(cls, data: Any) -> Any:
        """See StepLedger: the rates the per-look caps were planned with are dropped."""
        if isinstance(data, dict):
            return {key: value for key, value in data.items() if key != "burst_rates"}
        return data

    unobserved_s: float = Field(default=0.0, ge=0)
    warmup: WarmupProgress | None = None  # None: no warm-up (off, or an older state)
    p99_limit_s: float | None = None  # thresholds.max_p99_ms, for the p99 test's spread
    # Each track's events over the rollout in time blocks, for how much they come in
    # bursts (stats.dispersion): a service's burstiness is its own, not a step's.
    canary_spread: dict[Spread, Dispersion] = Field(default_factory=dict)
    stable_spread: dict[Spread, Dispersion] = Field(default_factory=dict)

    @property
    def warming(self) -> bool:
        return self.warmup is not None and not self.warmup.done

    def with_history(self, track: TrackName, blocks: Iterable[Increment]) -> Evidence:
        """A track's spreads seeded with what it served in past blocks of time (the
        stable's before the canary started), so a burst in the canary's first seconds
        meets a service already known to be bursty."""
        spreads = getattr(self, f"{track}_spread")
        for block in blocks:
            spreads = self._spread(spreads, Counts.of(block), BLOCK_S)
        return self.model_copy(update={f"{track}_spread": spreads})

    def dispersion(
        self, spread: Spread, tracks: tuple[TrackName, ...] = ("canary", "stable")
    ) -> float:
        """The larger of the tracks' dispersion factors for these events (>= 1): about
        how many requests fail or slow down together, as far as the rollout tells."""
        spreads = (getattr(self, f"{track}_spread").get(spread) for track in tracks)
        return max((spread.factor for spread in spreads if spread is not None), default=1.0)

    def stable_known(self, spread: Spread) -> bool:
        """Whether the stable's spread of these events is known (Dispersion.known), its
        history included; True for a ledger that keeps no spreads (written before them)."""
        kept = self.stable_spread.get(spread)
        return kept is None or kept.known

    def warm_up(self, since: float, time_s: float, requests: int) -> Evidence:
        """A warm-up from `since` (the canary started or was restarted); none when both
        are zero."""
        if time_s <= 0 and requests <= 0:
            return self.model_copy(update={"warmup": None})
        warmup = WarmupProgress(since=since, time_s=time_s, requests_needed=requests)
        return self.model_copy(update={"warmup": warmup})

    @property
    def current(self) -> StepLedger | None:
        return self.steps[-1] if self.steps else None

    @property
    def earlier(self) -> tuple[StepLedger, ...]:
        return self.steps[:-1]

    def open_step(self, index: int, weight: int, at: float) -> Evidence:
        """A new step: its counts start at the next marks (taken after the weight moved)."""
        step = StepLedger(index=index, weight=weight, started_at=at)
        return self.model_copy(update={"steps": (*self.steps, step), "marks": {}})

    def marked(self, track: str, at: float) -> Evidence:
        return self.model_copy(update={"marks": {**self.marks, track: at}})

    def counted(self, track: Literal["canary", "stable"], measurement: Increment) -> Evidence:
        """Add one increment to the current step; the next one starts where it ended."""
        step = self.current
        end = measurement.window_end
        if step is None or end is None:
            return self
        since = self.marks.get(track)
        start = measurement.window_start if measurement.window_start is not None else end
        gap = max(0.0, start - since) if since is not None else 0.0
        look = Counts.of(measurement)
        update: dict[str, object] = {track: getattr(step, track).merged(look)}
        if self.warming:
            update[f"{track}_warming"] = getattr(step, f"{track}_warming").merged(look)
        if track == "canary":
            update["observed_s"] = step.observed_s + max(0.0, end - start)
        steps = (*self.steps[:-1], step.model_copy(update=update))
        warmup = self.warmup
        if warmup is not None and track == "canary" and not warmup.done:
            warmup = warmup.model_copy(update={"requests": warmup.requests + measurement.requests})
        return self.model_copy(
            update={
                "steps": steps,
                "marks": {**self.marks, track: end},
                "unobserved_s": self.unobserved_s + gap,
                "warmup": warmup,
                f"{track}_spread": self._spread(
                    getattr(self, f"{track}_spread"),
                    look,
                    max(0.0, end - start),
                    latency=not (self.warming and track == "canary"),
                ),
            }
        )

    def looked(self, passed: dict[Dimension, PassedBy]) -> Evidence:
        """One more look at the current step, with the dimensions passed so far."""
        step = self.current
        if step is None:
            return self
        updated = step.model_copy(update={"looks": step.looks + 1, "passed": passed})
        return self.model_copy(
            update={"steps": (*self.steps[:-1], updated), "warmup": self._warmed()}
        )

    def _spread(
        self,
        spreads: dict[Spread, Dispersion],
        look: Counts,
        seconds: float,
        *,
        latency: bool = True,
    ) -> dict[Spread, Dispersion]:
        """A track's spreads with this look's events added; its slow requests too
        unless `latency` is off (the canary's while it warms up: a cold start is a
        change of rate, not a burst, and would read as a large dispersion for the
        rest of the rollout; the stable's history says how bursty the service is)."""
        events: dict[Spread, int | None] = {"errors": look.errors}
        bounds: dict[Spread, float | None] = {
            "latency": self.latency_bound_s if latency else None,
            "p99": self.p99_limit_s if latency else None,
        }
        for spread, bound in bounds.items():
            slow = look.slower_than(bound)
            events[spread] = slow.slow if slow is not None else None
        updated = dict(spreads)
        for spread, count in events.items():
            if count is not None:
                updated[spread] = updated.get(spread, Dispersion()).add(
                    count, look.requests, seconds
                )
        return updated

    def _warmed(self) -> WarmupProgress | None:
        """The warm-up, ended if this look completed it. Decided after a look counted
        both tracks, so a look is wholly in the warm-up or wholly after it."""
        warmup, at = self.warmup, self.marks.get("canary")
        if warmup is None or warmup.done or at is None:
            return warmup
        seconds, requests = warmup.left(at)
        if seconds > 0 or requests > 0:
            return warmup
        return warmup.model_copy(update={"done_at": at})

    def rollout_counts(self, track: Literal["canary", "stable"]) -> Counts:
        total = Counts()
        for step in self.steps:
            total = total.merged(getattr(step, track))
        return total
