"""The `nginx` provider: per-track counts and latency measured by the router itself.

The canary under test cannot misreport what nginx counted, and every request a client
got is counted, including the router's own 502s. Two sources, both read through the
router (its admin server):

- its cumulative per-track counters, in the demo service's series, for a rollout's
  increments (`mark`, `measure_since`): this is the scrape provider pointed at nginx,
  one target per track, with the same counter-reset handling (a restart resets them);
- its per-second history (the last 15 minutes), for a trailing window (`measure`):
  exact whole seconds, so a one-shot `metrics` or `status` sees the traffic that
  happened before it was typed, without waiting.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from typing import Any

from swiftdeploy.durations import format_duration
from swiftdeploy.errors import MetricsProviderError, SwiftDeployError
from swiftdeploy.metrics.base import Measurement, summarize
from swiftdeploy.metrics.scrape import ScrapeProvider

_SCHEME = "nginx://"


class NginxProvider(ScrapeProvider):
    name = "nginx"

    def __init__(
        self,
        read_metrics: Callable[[str], str],
        read_history: Callable[[str, int, int], Mapping[str, Any]],
        **kwargs: Any,
    ) -> None:
        super().__init__(lambda track: [f"{_SCHEME}{track}"], **kwargs)
        self._read_metrics = read_metrics
        self._read_history = read_history

    def measure(self, track: str, window_s: float) -> Measurement:
        """The last `window_s` seconds (whole seconds, up to the last complete one)."""
        end = math.floor(time.time())
        start = end - max(1, math.ceil(window_s))
        evidence = [f"{_SCHEME}{track}/history?from={start}&to={end}"]
        try:
            data = self._read_history(track, start, end)
            requests, errors = _count(data, "requests"), _count(data, "errors")
            buckets = {str(le): _number(v) for le, v in _mapping(data, "buckets").items()}
            since = _count(data, "since")
        except (SwiftDeployError, ValueError, TypeError) as exc:
            detail = exc.one_line() if isinstance(exc, SwiftDeployError) else str(exc)
            return Measurement.provider_error(track, self.name, detail, evidence)
        note = ""
        if since > start:
            kept = format_duration(end - since)
            note = (
                f"the window reaches back before nginx's first sample ({kept} ago,"
                f" when it started): these are the last {kept}"
            )
            start = since
        return summarize(
            track=track,
            provider=self.name,
            window_start=start,
            window_end=end,
            requests=requests,
            errors=errors,
            buckets=buckets,
            min_requests=self.min_requests,
            quantiles=self.quantiles,
            evidence=evidence,
            detail=note,
        )

    def blocks(self, track: str, window_s: float, block_s: float) -> list[Measurement]:
        """The last `window_s` seconds in whole-second blocks of about `block_s`, from
        the router's history, leaving out those from before nginx started and those
        that cannot be read."""
        size = max(1, round(block_s))
        end = math.floor(time.time())
        count = max(1, math.floor(window_s / size))
        measured: list[Measurement] = []
        for start in range(end - count * size, end, size):
            try:
                data = self._read_history(track, start, start + size)
                if _count(data, "since") > start:
                    continue  # nginx had not started yet: no history that far back
                buckets = {str(le): _number(v) for le, v in _mapping(data, "buckets").items()}
                requests, errors = _count(data, "requests"), _count(data, "errors")
            except (SwiftDeployError, ValueError, TypeError):
                continue  # a block not read is a block not counted; the rest still tell
            measured.append(
                summarize(
                    track=track,
                    provider=self.name,
                    window_start=start,
                    window_end=start + size,
                    requests=requests,
                    errors=errors,
                    buckets=buckets,
                )
            )
        return measured

    def _fetch(self, url: str) -> str:
        try:
            return self._read_metrics(url.removeprefix(_SCHEME))
        except SwiftDeployError as exc:
            raise MetricsProviderError(f"{url}: {exc.one_line()}") from None


def _mapping(data: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = data.get(key)
    if not isinstance(value, Mapping):
        raise ValueError(f"nginx history: {key!r} is not an object")
    return value


def _count(data: Mapping[str, Any], key: str) -> int:
    return int(_number(data.get(key)))


def _number(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value >= 0:
        raise ValueError(f"nginx history: {value!r} is not a count")
    return float(value)
