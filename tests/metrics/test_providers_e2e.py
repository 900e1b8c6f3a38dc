"""The three providers on the same live traffic: app scrape, nginx, real Prometheus."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import pytest

from swiftdeploy.commands.context import open_fleet
from swiftdeploy.fleet import Fleet
from swiftdeploy.load import LoadRun
from swiftdeploy.manifest import load_manifest
from swiftdeploy.metrics import ProviderDeps, create_provider
from swiftdeploy.metrics.base import MetricsProvider
from tests.conftest import Project

pytestmark = pytest.mark.e2e


@contextmanager
def _fleet(project: Project) -> Iterator[Fleet]:
    fleet = open_fleet(load_manifest(project.manifest), lambda message: None)
    try:
        yield fleet
    finally:
        fleet.http.close()


def _provider(fleet: Fleet, name: str, client: httpx.Client) -> MetricsProvider:
    router_url = fleet.router.metrics_url  # type: ignore[attr-defined]
    deps = ProviderDeps(
        settings=fleet.loaded.manifest.metrics,
        app_targets=fleet.metrics_targets,
        router_metrics_url=router_url,
        prometheus_url=lambda: fleet.ensure_prometheus(fleet.store.load()),
        client=client,
        min_requests=1,
        state_dir=fleet.state_dir / name,
    )
    return create_provider(name, deps)


def test_nginx_counts_agree_exactly_with_the_apps_own(project: Project) -> None:
    # Given a canary at 50% failing 20% of its requests
    project.cli("deploy")
    project.cli("canary", "v2", "--weight", "50")
    project.cli("chaos", "--error-rate", "0.2")
    with _fleet(project) as fleet, httpx.Client(trust_env=False) as client:
        app = _provider(fleet, "scrape", client)
        nginx = _provider(fleet, "nginx", client)
        for provider in (app, nginx):
            for track in ("stable", "canary"):
                provider.mark(track)
        started = time.monotonic()
        # When 600 requests go through nginx
        statuses = [client.get(project.url + "/").status_code for _ in range(600)]
        window = time.monotonic() - started + 2
        # Then both providers count the same requests and errors on each track
        for track in ("stable", "canary"):
            seen_by_app = app.measure(track, window)
            seen_by_nginx = nginx.measure(track, window)
            assert seen_by_app.requests == seen_by_nginx.requests, track
            assert seen_by_app.errors == seen_by_nginx.errors, track
        total = sum(nginx.measure(t, window).requests for t in ("stable", "canary"))
        errors = sum(nginx.measure(t, window).errors for t in ("stable", "canary"))
    assert total == 600
    assert errors == statuses.count(500) > 0


def test_scrape_matches_prometheus_default_queries(project: Project) -> None:
    # Given a real Prometheus scraping every replica each second
    project.edit_manifest("provider: nginx", "provider: prometheus")
    project.cli("deploy")
    project.cli("canary", "v2", "--weight", "50")
    project.cli("chaos", "--error-rate", "0.1", "--latency-ms", "120")
    with _fleet(project) as fleet, httpx.Client(trust_env=False) as client:
        prometheus = _provider(fleet, "prometheus", client)
        scrape = _provider(fleet, "scrape", client)
        assert prometheus.is_online()
        # And steady load for long enough to fill a 20 s window
        load = LoadRun(project.url + "/", seconds=32, connections=10, rate_per_connection=10)
        try:
            time.sleep(8)
            for track in ("stable", "canary"):
                scrape.mark(track)
            time.sleep(20)
            # When both measure the same 20 s window
            measured = {
                track: (scrape.measure(track, 20.5), prometheus.measure(track, 20))
                for track in ("stable", "canary")
            }
        finally:
            load.stop()
    # Then error rate and p99 agree within 2% relative, or within one scrape
    # interval's worth of requests
    for track, (ours, theirs) in measured.items():
        assert ours.ok, ours.detail
        assert theirs.ok, theirs.detail
        one_interval = (ours.rps or 0) * 1.0
        assert ours.error_rate is not None
        assert theirs.error_rate is not None
        rate_slack = max(0.02 * theirs.error_rate, one_interval / max(ours.requests, 1))
        assert abs(ours.error_rate - theirs.error_rate) <= rate_slack, (track, ours, theirs)
        ours_p99 = ours.latency_ms(0.99)
        theirs_p99 = theirs.latency_ms(0.99)
        assert ours_p99 is not None
        assert theirs_p99 is not None
        assert abs(ours_p99 - theirs_p99) <= 0.02 * theirs_p99, (track, ours_p99, theirs_p99)
        assert abs(ours.requests - theirs.requests) <= 0.02 * theirs.requests + one_interval
    assert measured["canary"][1].latency_ms(0.99) > 100  # the injected latency shows
