"""Metrics providers, by name: what a track served over a window, measured, never assumed.
May import: state, manifest, analysis and the foundation; not another part.

An unknown name is an error, never a silent fallback (Flagger's mistake).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from swiftdeploy.errors import BadInputError
from swiftdeploy.manifest import Metrics
from swiftdeploy.metrics.base import MetricsProvider

PROVIDERS = ("scrape", "prometheus", "nginx")


@dataclass(frozen=True)
class ProviderDeps:
    settings: Metrics
    app_targets: Callable[[str], Sequence[str]]  # each track's replica /metrics URLs
    router_metrics: Callable[[str], str]  # the router's per-track counters (Prometheus text)
    router_history: Callable[[str, int, int], Mapping[str, Any]]  # its per-second history
    prometheus_url: Callable[[], str]  # the server to query (started on first use)
    client: httpx.Client
    min_requests: int
    state_dir: Path
    bootstrap_s: float = 1.0
    keep_history: bool = True  # saved scrapes, for one-shot runs; off for read-only views


def create_provider(name: str, deps: ProviderDeps) -> MetricsProvider:
    # Each provider's module loads only when that provider is made (jinja2, threads).
    from swiftdeploy.metrics.nginx import NginxProvider
    from swiftdeploy.metrics.prometheus import PrometheusProvider
    from swiftdeploy.metrics.scrape import ScrapeProvider

    quantiles = deps.settings.quantiles
    if name == "scrape":
        return ScrapeProvider(
            deps.app_targets,
            deps.client,
            min_requests=deps.min_requests,
            quantiles=quantiles,
            history_path=deps.state_dir / "scrapes.json" if deps.keep_history else None,
            bootstrap_s=deps.bootstrap_s,
        )
    if name == "nginx":
        return NginxProvider(
            deps.router_metrics,
            deps.router_history,
            client=deps.client,
            min_requests=deps.min_requests,
            quantiles=quantiles,
            history_path=deps.state_dir / "scrapes-nginx.json" if deps.keep_history else None,
            bootstrap_s=deps.bootstrap_s,
        )
    if name == "prometheus":
        return PrometheusProvider(
            deps.prometheus_url(),
            deps.client,
            min_requests=deps.min_requests,
            quantiles=quantiles,
            queries=deps.settings.prometheus.queries,
            scrape_interval_s=deps.settings.prometheus.scrape_interval,
        )
    raise BadInputError(
        f"unknown metrics provider {name!r}", hint=f"choose one of: {', '.join(PROVIDERS)}"
    )
