"""Metrics providers, by name: what a track served over a window, measured, never assumed.
May import: state, manifest, analysis and the foundation; not another part.

A provider is made by a factory `(ProviderDeps) -> MetricsProvider`; a third party
registers one under the entry point group `swiftdeploy.metrics_providers`. An unknown
name is an error, never a silent fallback (Flagger's mistake).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from swiftdeploy.manifest import Metrics
from swiftdeploy.metrics.base import MetricsProvider
from swiftdeploy.registry import Registry


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
    # A Kubernetes service's {namespace, service}: the prometheus provider's defaults
    # select its pods by these labels.
    prometheus_labels: Mapping[str, str] | None = None


# Each provider's module loads only when that provider is made (jinja2, threads).


def scrape_provider(deps: ProviderDeps) -> MetricsProvider:
    from swiftdeploy.metrics.scrape import ScrapeProvider

    return ScrapeProvider(deps.app_targets, **_scrape_options(deps, "scrapes.json"))


def nginx_provider(deps: ProviderDeps) -> MetricsProvider:
    from swiftdeploy.metrics.nginx import NginxProvider

    return NginxProvider(
        deps.router_metrics, deps.router_history, **_scrape_options(deps, "scrapes-nginx.json")
    )


def _scrape_options(deps: ProviderDeps, history_file: str) -> dict[str, Any]:
    """What a scrape takes, whether of the replicas or of the router's counters."""
    return {
        "client": deps.client,
        "min_requests": deps.min_requests,
        "quantiles": deps.settings.quantiles,
        "history_path": deps.state_dir / history_file if deps.keep_history else None,
        "bootstrap_s": deps.bootstrap_s,
    }


def prometheus_provider(deps: ProviderDeps) -> MetricsProvider:
    from swiftdeploy.metrics.prometheus import PrometheusProvider

    return PrometheusProvider(
        deps.prometheus_url(),
        deps.client,
        min_requests=deps.min_requests,
        quantiles=deps.settings.quantiles,
        queries=deps.settings.prometheus.queries,
        scrape_interval_s=deps.settings.prometheus.scrape_interval,
        labels=deps.prometheus_labels,
    )


ProviderFactory = Callable[[ProviderDeps], MetricsProvider]

PROVIDERS: Registry[ProviderFactory] = Registry(
    "metrics provider",
    "swiftdeploy.metrics_providers",
    {
        "scrape": "swiftdeploy.metrics:scrape_provider",
        "prometheus": "swiftdeploy.metrics:prometheus_provider",
        "nginx": "swiftdeploy.metrics:nginx_provider",
    },
)


def create_provider(name: str, deps: ProviderDeps) -> MetricsProvider:
    return PROVIDERS.get(name)(deps)
