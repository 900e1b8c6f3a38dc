"""The metrics interface: a provider measures one track over a window and never raises.

Three outcomes, kept apart as Flagger and Argo Rollouts keep them:

- `ok`: enough requests in the window; error rate and latency quantiles are set.
- `no_data`: the window had no requests, or fewer than `min_requests`. Counts are
  reported for the record, but `error_rate` and `quantiles` stay None, so nothing
  downstream can read a pass out of too little evidence.
- `provider_error`: the source was down, refused, timed out or answered garbage.
  `measure()` returns this; it never raises.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Literal, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field, model_validator

from swiftdeploy.durations import format_duration
from swiftdeploy.stats.quantile import histogram_quantile

Status = Literal["ok", "no_data", "provider_error"]
DEFAULT_QUANTILES = (0.5, 0.9, 0.99)


def quantile_key(q: float) -> str:
    """0.5 -> "p50", 0.99 -> "p99", 0.999 -> "p99.9"."""
    return f"p{q * 100:g}"


class Measurement(BaseModel):
    """One track over one window, as measured (never assumed)."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    track: str
    provider: str
    status: Status
    detail: str = ""
    # Unix seconds of the first and last scrape of the window; None if nothing was read.
    window_start: float | None = None
    window_end: float | None = None
    # window_end - window_start: the real span, which may differ from the window asked for.
    elapsed_s: float | None = Field(default=None, ge=0)
    requests: int = Field(default=0, ge=0)
    errors: int = Field(default=0, ge=0)  # responses with a 5xx code
    error_rate: float | None = Field(default=None, ge=0, le=1)  # a fraction: 0.05 is 5%
    # "p50"/"p90"/"p99" -> milliseconds; None overall without data, per key if undefined.
    quantiles: dict[str, float | None] | None = None
    # Cumulative latency bucket counts in the window, keyed by `le` ("0.05", "+Inf").
    buckets: dict[str, int] = Field(default_factory=dict)
    rps: float | None = Field(default=None, ge=0)
    evidence: tuple[str, ...] = ()  # the URLs scraped or the queries run

    @model_validator(mode="after")
    def _consistent(self) -> Measurement:
        if self.errors > self.requests:
            raise ValueError("errors cannot exceed requests")
        if (
            self.window_start is not None
            and self.window_end is not None
            and self.window_end < self.window_start
        ):
            raise ValueError("window_end is before window_start")
        if self.status == "ok" and (self.requests == 0 or self.error_rate is None):
            raise ValueError("an ok measurement needs requests and an error rate")
        return self

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def latency_ms(self, q: float) -> float | None:
        """The q-quantile in milliseconds, or None when there is none."""
        if self.quantiles is None:
            return None
        return self.quantiles.get(quantile_key(q))

    @classmethod
    def no_data(
        cls, track: str, provider: str, detail: str, evidence: Iterable[str] = ()
    ) -> Measurement:
        return cls._without_numbers("no_data", track, provider, detail, evidence)

    @classmethod
    def provider_error(
        cls, track: str, provider: str, detail: str, evidence: Iterable[str] = ()
    ) -> Measurement:
        return cls._without_numbers("provider_error", track, provider, detail, evidence)

    @classmethod
    def _without_numbers(
        cls, status: Status, track: str, provider: str, detail: str, evidence: Iterable[str]
    ) -> Measurement:
        return cls(
            track=track, provider=provider, status=status, detail=detail, evidence=tuple(evidence)
        )


@runtime_checkable
class MetricsProvider(Protocol):
    """A source of per-track measurements (Flagger's tiny interface, one call per window)."""

    @property
    def name(self) -> str: ...

    @property
    def resolution_s(self) -> float:
        """The shortest span worth measuring: looking more often sees nothing new."""
        ...

    def measure(self, track: str, window_s: float) -> Measurement:
        """Measure `track` over about the last `window_s` seconds; never raises."""
        ...

    def mark(self, track: str) -> float | None:
        """Take a reading now and return its time, for a later `measure_since`; None if
        the reading failed (the next measure says why)."""
        ...

    def measure_since(self, track: str, since: float) -> Measurement:
        """Exactly what `track` served from the reading at `since` (a mark, or an earlier
        result's window_end) to a reading now; never raises. Its window_end is where the
        next increment starts. A window_start later than `since` means the reading at
        `since` is gone (the span in between was not measured); a span too short to
        measure comes back with window_end == since and nothing counted."""
        ...

    def is_online(self) -> bool: ...


@runtime_checkable
class BlockHistory(Protocol):
    """A provider that can also say what a track served in each of the last few
    blocks of time, before anyone asked (nginx keeps 15 minutes, per second;
    Prometheus its retention). `scrape` cannot: it reads only when asked."""

    def blocks(self, track: str, window_s: float, block_s: float) -> list[Measurement]:
        """The last `window_s` seconds in consecutive blocks of `block_s`, oldest first;
        [] when the history cannot be read (never raises)."""
        ...


def summarize(
    *,
    track: str,
    provider: str,
    window_start: float,
    window_end: float,
    requests: float,
    errors: float,
    buckets: Mapping[str, float],
    min_requests: int = 0,
    quantiles: Sequence[float] = DEFAULT_QUANTILES,
    evidence: Iterable[str] = (),
    detail: str = "",
) -> Measurement:
    """Turn window counts (any provider's) into a Measurement with the right status.

    `buckets` are cumulative counts by `le` in seconds, as the histogram exposes them;
    quantiles come out in milliseconds, computed exactly as Prometheus's
    histogram_quantile. Counts are rounded to whole requests.
    """
    elapsed = window_end - window_start
    total = round(requests)
    failed = min(round(errors), total)
    counts = {le: round(count) for le, count in buckets.items()}
    notes = [detail] if detail else []
    status: Status = "ok"
    start: float | None = window_start
    end: float | None = window_end
    error_rate: float | None = None
    latencies: dict[str, float | None] | None = None
    rps: float | None = None
    if elapsed <= 0:
        status = "no_data"
        notes.append(
            f"the window from {window_start:.3f} to {window_end:.3f} has no duration;"
            " did the clock go back?"
        )
        if elapsed < 0:  # an impossible window is not reported as one
            start = end = None
    elif total == 0 or total < min_requests:
        status = "no_data"
        rps = total / elapsed
        floor = f", fewer than min_requests={min_requests}" if min_requests else ""
        notes.append(f"{total} requests in {format_duration(elapsed)}{floor}")
    else:
        rps = total / elapsed
        error_rate = failed / total
        latencies = _quantiles_ms(quantiles, counts)
        if latencies is None:
            notes.append("no latency histogram observations in the window")
            latencies = {quantile_key(q): None for q in quantiles}
    return Measurement(
        track=track,
        provider=provider,
        status=status,
        detail="; ".join(notes),
        window_start=start,
        window_end=end,
        elapsed_s=max(elapsed, 0.0),
        requests=total,
        errors=failed,
        error_rate=error_rate,
        quantiles=latencies,
        buckets=counts,
        rps=rps,
        evidence=tuple(evidence),
    )


def _quantiles_ms(
    quantiles: Sequence[float], buckets: Mapping[str, int]
) -> dict[str, float | None] | None:
    pairs = [(float(le), float(count)) for le, count in buckets.items()]
    if not any(math.isinf(bound) and count > 0 for bound, count in pairs):
        return None
    out: dict[str, float | None] = {}
    for q in quantiles:
        value = histogram_quantile(q, pairs)
        out[quantile_key(q)] = value * 1000 if math.isfinite(value) else None
    return out
