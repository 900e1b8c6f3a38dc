"""The three providers on the same live traffic: app scrape, nginx, real Prometheus."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import pytest
from bench.support.project import Project

from swiftdeploy.commands.context import command_context
from swiftdeploy.fleet import Fleet
from swiftdeploy.loadgen import LoadRun
from swiftdeploy.manifest import load_manifest
from swiftdeploy.metrics import ProviderDeps, create_provider
from swiftdeploy.metrics.base import Measurement, MetricsProvider
from tests.conftest import version_counts

pytestmark = pytest.mark.e2e


@contextmanager
def _fleet(project: Project) -> Iterator[Fleet]:
    with command_context(load_manifest(project.manifest), lambda message: None) as context:
        yield context.fleet


def _provider(fleet: Fleet, name: str, client: httpx.Client) -> MetricsProvider:
    deps = ProviderDeps(
        settings=fleet.loaded.manifest.metrics,
        app_targets=fleet.metrics_targets,
        router_metrics=fleet.router.read_metrics,
        router_history=fleet.router.read_history,
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
        marks = {
            (provider.name, track): provider.mark(track)
            for provider in (app, nginx)
            for track in ("stable", "canary")
        }
        # When 600 requests go through nginx
        statuses = [client.get(project.url + "/").status_code for _ in range(600)]
        # Then both providers count the same requests and errors on each track, from
        # their marks: the increments a rollout adds up
        seen = {
            (provider.name, track): provider.measure_since(track, marks[provider.name, track])
            for provider in (app, nginx)
            for track in ("stable", "canary")
        }
        for track in ("stable", "canary"):
            by_app, by_nginx = seen["scrape", track], seen["nginx", track]
            assert by_app.requests == by_nginx.requests, track
            assert by_app.errors == by_nginx.errors, track
        total = sum(seen["nginx", t].requests for t in ("stable", "canary"))
        errors = sum(seen["nginx", t].errors for t in ("stable", "canary"))
    assert total == 600
    assert errors == statuses.count(500) > 0


def _quantile_shift_ms(measured: Measurement, q: float, requests: float) -> float:
    """How far the q-quantile can move when the window gains or loses `requests`: the
    quantile is interpolated linearly across the bucket it falls in, over that bucket's
    count, so that many requests more or fewer below its rank move it by at most the
    bucket's width times their share of the bucket (a p99 in a sparse tail bucket moves
    a lot; one in a full bucket hardly)."""
    bounds = sorted((float(le), count) for le, count in measured.buckets.items())
    total = bounds[-1][1]
    lower, below = 0.0, 0
    for upper, count in bounds:
        if count >= q * total:
            width_ms = (upper - lower) * 1000
            in_bucket = max(count - below, 1)
            return width_ms * min(1.0, requests / in_bucket)
        lower, below = upper, count
    raise AssertionError(f"no bucket holds the {q} quantile: {measured.buckets}")


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
    # Then counts, error rate and p99 agree within 2% relative, or within what one
    # scrape interval's worth of requests (the windows' edges differ by that) can move
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
        p99_slack = max(0.02 * theirs_p99, _quantile_shift_ms(theirs, 0.99, one_interval))
        assert abs(ours_p99 - theirs_p99) <= p99_slack, (track, ours_p99, theirs_p99, p99_slack)
        assert abs(ours.requests - theirs.requests) <= 0.02 * theirs.requests + one_interval
    assert measured["canary"][1].latency_ms(0.99) > 100  # the injected latency shows


def test_metrics_shows_the_traffic_that_came_before_it(project: Project) -> None:
    # Given v1 deployed and a canary taking 20%
    project.cli("deploy")
    project.cli("canary", "v2", "--weight", "20")
    # When 400 requests go through nginx, and only then `metrics` runs
    sent = version_counts(project.url + "/", 400)
    time.sleep(1.1)  # the last second completes: the history counts whole seconds
    done = project.cli("metrics", "--json", "--window", "1m")
    # Then it counts every one of them, by track: read from the router's history, not
    # primed now and waited for (that would count none of what came before). No timing
    # assertion: a busy machine made it 6.6 s once, and speed is bench/'s to measure.
    measured = json.loads(done.stdout)
    assert measured["canary"]["requests"] == sent["v2"]
    assert measured["stable"]["requests"] == sent["v1"]
    assert measured["canary"]["status"] == "ok"


def test_a_window_older_than_nginx_says_so(project: Project) -> None:
    project.cli("deploy")
    version_counts(project.url + "/", 20)
    time.sleep(1.1)
    done = project.cli("metrics", "--window", "10m", "--track", "stable")
    assert "the window reaches back before nginx's first sample" in done.stderr
