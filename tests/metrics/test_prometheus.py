"""The `prometheus` provider's history of a track (`blocks`), read from a real Prometheus
on loopback whose storage was filled beforehand, with promtool, with samples at known
times: what it answers is Prometheus's own, and where the blocks fall is exact."""

from __future__ import annotations

import itertools
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from swiftdeploy.metrics.base import BlockHistory
from swiftdeploy.metrics.prometheus import PrometheusProvider
from swiftdeploy.metrics.prometheus_server import PrometheusServer
from swiftdeploy.ports import free_port
from swiftdeploy.state.evidence import Evidence

# The first sample's time (whole seconds, a sample a second), recent enough for the
# server's retention.
START = int(time.time()) - 3600
SPAN_S = 120
RATE = 10  # the stable's requests a second, over its two replicas
# A burst: 20 requests fail between these two samples, both inside one 5 s block.
BURST_AT = START + 62
END = START + SPAN_S + 0.5  # "now": every block ends half a second after a sample

Serve = Callable[[str], str]  # OpenMetrics text with timestamps -> Prometheus's URL


def _samples() -> str:
    """Two stable replicas (6 and 4 requests a second, all under 100 ms) and one canary,
    with the burst on the first replica; a 5xx series from the start, as the demo has
    once it failed a request."""
    requests, failed, buckets = [], [], []
    for replica, share, track in (("a", 6, "stable"), ("b", 4, "stable"), ("c", 1, "canary")):
        labels = f'track="{track}",replica="{replica}"'
        for second in range(SPAN_S + 1):
            at = START + second
            burst = 20 if replica == "a" and at > BURST_AT else 0
            served = share * second
            requests.append(f'http_requests_total{{{labels},code="200"}} {served} {at}')
            failed.append(f'http_requests_total{{{labels},code="500"}} {burst} {at}')
            for le in ("0.1", "+Inf"):
                buckets.append(
                    f'http_request_duration_seconds_bucket{{{labels},le="{le}"}}'
                    f" {served + burst} {at}"
                )
    return "\n".join(
        [
            "# TYPE http_requests counter",
            *requests,
            *failed,
            "# TYPE http_request_duration_seconds histogram",
            *buckets,
            "# EOF",
            "",
        ]
    )


@pytest.fixture
def prometheus(tmp_path: Path) -> Iterator[Serve]:
    """serve(samples): a real Prometheus whose storage holds these samples, started on a
    free loopback port and stopped after the test."""
    started: list[subprocess.Popen[bytes]] = []
    promtool = shutil.which("promtool")
    assert promtool, "promtool (Prometheus's) is not installed: run `make test-setup`"

    def serve(samples: str) -> str:
        server = PrometheusServer(tmp_path, free_port(), scrape_interval_s=1.0)
        spec = server.prepare()  # as the runtime starts it, with no targets
        source = tmp_path / "samples.om"
        source.write_text(samples)
        subprocess.run(
            [promtool, "tsdb", "create-blocks-from", "openmetrics", source, server.dir / "data"],
            check=True,
            capture_output=True,
        )
        started.append(subprocess.Popen(spec.argv, stderr=subprocess.DEVNULL))
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{server.url}/-/ready", timeout=1).status_code == 200:
                    return server.url
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise AssertionError("Prometheus did not become ready in 60 s")

    yield serve
    for process in started:
        process.terminate()
        process.wait(timeout=30)


@pytest.fixture
def provider(prometheus: Serve) -> Iterator[PrometheusProvider]:
    url = prometheus(_samples())
    with httpx.Client(trust_env=False) as client:
        yield PrometheusProvider(url, client, clock=lambda: END)


def test_the_history_comes_in_consecutive_blocks_oldest_first(
    provider: PrometheusProvider,
) -> None:
    assert isinstance(provider, BlockHistory)  # the engine seeds the stable's spread
    blocks = provider.blocks("stable", 60, 5)
    assert len(blocks) == 12
    assert blocks[-1].window_end == END
    assert blocks[0].window_start == END - 60
    for before, after in itertools.pairwise(blocks):
        assert before.window_end == after.window_start
    # a steady 10 requests a second: 50 in each block (the burst's 20 on top in one)
    assert [b.requests for b in blocks].count(50) == 11
    assert all(b.buckets["0.1"] == b.buckets["+Inf"] > 0 for b in blocks)  # all under 0.1 s
    assert all(b.buckets["+Inf"] == 50 for b in blocks if b.requests == 50)


def test_a_burst_in_the_history_is_in_one_block_and_reads_as_a_burst(
    provider: PrometheusProvider,
) -> None:
    blocks = provider.blocks("stable", 60, 5)
    failed = [b.errors for b in blocks]
    # Prometheus's increase() extrapolates a block's 4 s of samples toward its 5 s
    assert 20 <= max(failed) <= 25
    assert sum(failed) == max(failed)
    burst = blocks[failed.index(max(failed))]
    assert burst.window_start < BURST_AT < BURST_AT + 1 < (burst.window_end or 0)
    seeded = Evidence(latency_bound_s=0.1).with_history("stable", blocks)
    assert seeded.stable_spread["errors"].blocks == 12
    assert seeded.dispersion("errors") > 10  # about the 20 that failed together
    # the canary's series are not the stable's
    assert [b.requests for b in provider.blocks("canary", 60, 5)] == [5] * 12


def test_blocks_before_the_first_sample_are_left_out(provider: PrometheusProvider) -> None:
    blocks = provider.blocks("stable", 300, 5)
    # 120 s of samples: 24 blocks; the one before holds a single sample, too few for
    # an increase
    assert len(blocks) == 24
    assert blocks[0].window_start == START + 0.5


def test_a_prometheus_that_does_not_answer_gives_no_history() -> None:
    with httpx.Client(trust_env=False) as client:
        down = PrometheusProvider(f"http://127.0.0.1:{free_port()}", client, timeout_s=0.5)
        assert down.blocks("stable", 60, 5) == []
