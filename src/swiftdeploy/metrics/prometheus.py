"""The `prometheus` provider: a real Prometheus server, queried through its HTTP API.

Default queries are the ones a person would write (the rate ratio for errors,
histogram_quantile over bucket rates for latency); each is a jinja2 template with
`track` and `window` (e.g. `30s`) and can be overridden in `metrics.prometheus.queries`,
like Flagger's MetricTemplate. Counts come from `increase()`, which Prometheus
extrapolates to the window's edges, so they are rounded to whole requests.

Prometheus keeps each track's history, so `blocks` reads the stable's last minutes
before a rollout (metrics.base.BlockHistory): the same count templates, one range
query each, `increase()` over a block evaluated at every block's end.

On Kubernetes the series of many services share one Prometheus: the defaults there
(`KUBERNETES_QUERIES`) select the service's pods by the common label convention
(`namespace`, `app` = the service's name, `track`), and templates also get
`namespace` and `service`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import httpx

from swiftdeploy.durations import format_duration
from swiftdeploy.metrics.base import DEFAULT_QUANTILES, Measurement, quantile_key, summarize
from swiftdeploy.promql import render_query

DEFAULT_QUERIES = {
    "requests": 'sum(increase(http_requests_total{track="{{ track }}"}[{{ window }}]))',
    "errors": ('sum(increase(http_requests_total{track="{{ track }}",code=~"5.."}[{{ window }}]))'),
    "error_rate": (
        'sum(rate(http_requests_total{track="{{ track }}",code=~"5.."}[{{ window }}]))'
        ' / sum(rate(http_requests_total{track="{{ track }}"}[{{ window }}]))'
    ),
    "buckets": (
        "sum by (le) (increase("
        'http_request_duration_seconds_bucket{track="{{ track }}"}[{{ window }}]))'
    ),
    "quantile": (
        "histogram_quantile({{ q }}, sum by (le) (rate("
        'http_request_duration_seconds_bucket{track="{{ track }}"}[{{ window }}])))'
    ),
}


def _scoped(template: str) -> str:
    return template.replace(
        'track="{{ track }}"',
        'namespace="{{ namespace }}",app="{{ service }}",track="{{ track }}"',
    )


KUBERNETES_QUERIES = {name: _scoped(text) for name, text in DEFAULT_QUERIES.items()}


class QueryError(Exception):
    """Prometheus did not answer, or answered something that is not a query result."""


class PrometheusProvider:
    name = "prometheus"

    def __init__(
        self,
        url: str,
        client: httpx.Client,
        *,
        min_requests: int = 0,
        quantiles: Sequence[float] = DEFAULT_QUANTILES,
        queries: Mapping[str, str] | None = None,
        scrape_interval_s: float = 1.0,
        timeout_s: float = 2.0,
        labels: Mapping[str, str] | None = None,
        track_labels: Mapping[str, Mapping[str, str]] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.url = url.rstrip("/")
        self._clock = clock
        self._client = client
        self.min_requests = min_requests
        self.quantiles = tuple(quantiles)
        self.scrape_interval_s = scrape_interval_s
        self.timeout_s = timeout_s
        # labels: {namespace, service} of a Kubernetes service, its default queries'
        # selectors, and variables every template gets.
        self._labels = dict(labels or {})
        # track_labels: variables of one track only (the judge's pod-template hash or
        # workload of each track, when the tracks are not told apart by `track`).
        self._track_labels = {track: dict(v) for track, v in (track_labels or {}).items()}
        defaults = KUBERNETES_QUERIES if labels else DEFAULT_QUERIES
        self._templates = {**defaults, **(queries or {})}

    def is_online(self) -> bool:
        try:
            return (
                self._client.get(f"{self.url}/-/ready", timeout=self.timeout_s).status_code == 200
            )
        except httpx.HTTPError:
            return False

    @property
    def resolution_s(self) -> float:
        # increase() needs two samples inside its range
        return 2 * self.scrape_interval_s

    def mark(self, track: str) -> float | None:
        """Prometheus keeps its own history: a mark is just the time."""
        return self._clock()

    def render(self, key: str, track: str, window_s: float, **extra: Any) -> str:
        # Whole milliseconds, so windows that end where the next begins chain exactly.
        return render_query(
            self._templates[key],
            track=track,
            window=f"{max(round(window_s * 1000), 1)}ms",
            **self._labels,
            **self._track_labels.get(track, {}),
            **extra,
        )

    def measure(self, track: str, window_s: float) -> Measurement:
        # Prometheus needs at least two samples in a range: never ask for less than that.
        window = max(round(window_s), math.ceil(2 * self.scrape_interval_s))
        return self._measure_range(track, self._clock(), float(window))

    def measure_since(self, track: str, since: float) -> Measurement:
        window_ms = math.floor((self._clock() - since) * 1000)
        if window_ms < self.resolution_s * 1000:  # too short: count it with the next look
            return Measurement(
                track=track,
                provider=self.name,
                status="no_data",
                detail=f"{window_ms} ms since the last reading; Prometheus needs more",
                window_start=since,
                window_end=since,
                elapsed_s=0.0,
            )
        return self._measure_range(track, since + window_ms / 1000, window_ms / 1000)

    def _measure_range(self, track: str, now: float, window_s: float) -> Measurement:
        evidence: list[str] = []
        try:
            requests = self._scalar(self.render("requests", track, window_s), now, evidence)
            errors = self._scalar(self.render("errors", track, window_s), now, evidence)
            error_rate = self._scalar(self.render("error_rate", track, window_s), now, evidence)
            buckets = self._by_le(self.render("buckets", track, window_s), now, evidence)
            latencies: dict[str, float | None] = {}
            for q in self.quantiles:
                key = "p99" if q == 0.99 and "p99" in self._templates else "quantile"
                seconds = self._scalar(self.render(key, track, window_s, q=q), now, evidence)
                latencies[quantile_key(q)] = None if seconds is None else seconds * 1000
        except QueryError as exc:
            return Measurement.provider_error(track, self.name, str(exc), evidence)
        except Exception as exc:  # never raise out of measure(): fail closed
            return Measurement.provider_error(
                track, self.name, f"unexpected {type(exc).__name__}: {exc}", evidence
            )
        total = round(requests or 0.0)
        failed = min(round(errors or 0.0), total)
        common: dict[str, Any] = {
            "track": track,
            "provider": self.name,
            "window_start": now - window_s,
            "window_end": now,
            "elapsed_s": window_s,
            "requests": total,
            "errors": failed,
            "buckets": {le: round(v) for le, v in buckets.items()},
            "rps": total / window_s,
            "evidence": tuple(evidence),
        }
        if error_rate is None and total > 0 and not errors:
            # No 5xx series exists yet, so the ratio's numerator is an empty vector:
            # that is zero errors, not missing data.
            error_rate = 0.0
        if total == 0 or total < self.min_requests or error_rate is None:
            floor = f", fewer than min_requests={self.min_requests}" if self.min_requests else ""
            return Measurement(
                status="no_data",
                detail=f"{total} requests in {format_duration(window_s)}{floor}",
                **common,
            )
        return Measurement(status="ok", error_rate=error_rate, quantiles=latencies, **common)

    def blocks(self, track: str, window_s: float, block_s: float) -> list[Measurement]:
        """The last `window_s` seconds in consecutive blocks of `block_s` (at least the
        provider's resolution), oldest first, each what the count templates say over
        it: `increase()` extrapolates a block's samples to its edges, as it does for a
        rollout's own increments. Blocks without samples (before Prometheus or the
        track's replicas were there) are left out; [] when Prometheus cannot be read."""
        size = max(block_s, self.resolution_s)
        count = math.floor(window_s / size)
        if count < 1:
            return []
        end = self._clock()
        first = end - (count - 1) * size
        evidence: list[str] = []
        try:
            requests = self._range(self.render("requests", track, size), first, end, size, evidence)
            errors = self._range(self.render("errors", track, size), first, end, size, evidence)
            by_le = self._range_by_le(
                self.render("buckets", track, size), first, end, size, evidence
            )
        except Exception:  # a history not read is no history: never raise out of here
            return []
        measured: list[Measurement] = []
        for index in range(count):
            total = requests.get(index)
            if total is None:
                continue
            at = first + index * size
            measured.append(
                summarize(
                    track=track,
                    provider=self.name,
                    window_start=at - size,
                    window_end=at,
                    requests=total,
                    errors=errors.get(index, 0.0),  # no 5xx series yet: none failed
                    buckets={le: values.get(index, 0.0) for le, values in by_le.items()},
                    quantiles=self.quantiles,
                    evidence=evidence,
                )
            )
        return measured

    def _query(self, promql: str, at: float, evidence: list[str]) -> list[dict[str, Any]]:
        return self._get("query", "vector", promql, {"time": f"{at:.3f}"}, evidence)

    def _get(
        self, api: str, shape: str, promql: str, params: dict[str, str], evidence: list[str]
    ) -> list[dict[str, Any]]:
        """The result of one API call (`query` or `query_range`), which must be `shape`."""
        evidence.append(promql)
        try:
            response = self._client.get(
                f"{self.url}/api/v1/{api}",
                params={"query": promql, **params},
                timeout=self.timeout_s,
            )
            body = response.json()
        except (httpx.HTTPError, ValueError) as exc:
            raise QueryError(f"Prometheus at {self.url} did not answer: {exc}") from None
        if response.status_code != 200 or body.get("status") != "success":
            raise QueryError(f"Prometheus refused {promql!r}: {body.get('error', response.text)}")
        data = body.get("data", {})
        if data.get("resultType") != shape:
            raise QueryError(f"expected a {shape} from {promql!r}, got {data.get('resultType')}")
        return list(data.get("result", []))

    def _matrix(
        self, promql: str, first: float, end: float, step: float, evidence: list[str]
    ) -> list[tuple[dict[str, str], dict[int, float]]]:
        """Each series of a range query evaluated at first, first + step, ..., end, as
        (labels, {step index: value}), NaN values left out."""
        params = {"start": f"{first:.3f}", "end": f"{end:.3f}", "step": f"{step:.3f}"}
        out: list[tuple[dict[str, str], dict[int, float]]] = []
        for series in self._get("query_range", "matrix", promql, params, evidence):
            values: dict[int, float] = {}
            for at, value in series["values"]:
                number = float(value)
                if not math.isnan(number):
                    values[round((float(at) - first) / step)] = number
            out.append((dict(series["metric"]), values))
        return out

    def _range(
        self, promql: str, first: float, end: float, step: float, evidence: list[str]
    ) -> dict[int, float]:
        """The single series of a range query (as `_scalar` takes a vector's); {} if none."""
        matrix = self._matrix(promql, first, end, step, evidence)
        return matrix[0][1] if matrix else {}

    def _range_by_le(
        self, promql: str, first: float, end: float, step: float, evidence: list[str]
    ) -> dict[str, dict[int, float]]:
        return {
            str(labels.get("le", "")): values
            for labels, values in self._matrix(promql, first, end, step, evidence)
        }

    def _scalar(self, promql: str, at: float, evidence: list[str]) -> float | None:
        """The single value of a vector query; None for an empty or NaN answer (no data)."""
        result = self._query(promql, at, evidence)
        if not result:
            return None
        value = float(result[0]["value"][1])
        return None if math.isnan(value) else value

    def _by_le(self, promql: str, at: float, evidence: list[str]) -> dict[str, float]:
        out: dict[str, float] = {}
        for series in self._query(promql, at, evidence):
            out[str(series["metric"].get("le", ""))] = float(series["value"][1])
        return out
