"""The router's latency histogram is the service's time, not the client's: a client that
sends its request slowly, or reads the response slowly, cannot move a track's p99
(docs/decisions.md, "Latency is the service's time"). Real nginx on loopback, a real
replica that answers in about a millisecond."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
from bench.support.project import Project

from swiftdeploy.ports import free_port
from swiftdeploy.stats.quantile import histogram_quantile
from tests.conftest import slowclient_deployed, wait_for
from tests.support.slowclient import BIG_BYTES, read_slowly, send_slowly

pytestmark = pytest.mark.e2e

SLOW_SENDERS = 4
FAST_REQUESTS = 20
PAUSE_S = 1.5  # a request_time clock would put each slow sender at >= 1.5 s
SERVICE_BOUND_S = 0.25  # the replica answers in ~1 ms; anything counted above is the client


@pytest.fixture(scope="module")
def served() -> Iterator[Project]:
    """v1 of tests.support.slowclient's service behind the router: one fast replica."""
    yield from slowclient_deployed()


def _counted(project: Project, track: str) -> tuple[int, int, dict[str, int]]:
    """(requests, 5xx, cumulative latency buckets by le) the router counted for a track."""
    text = project.admin_get(f"/metrics/{track}").text
    codes = re.findall(r'^http_requests_total\{.*code="(\d+)"\} (\d+)$', text, re.M)
    buckets = re.findall(
        r'^http_request_duration_seconds_bucket\{.*le="([^"]+)"\} (\d+)$', text, re.M
    )
    requests = sum(int(n) for _, n in codes)
    errors = sum(int(n) for code, n in codes if code.startswith("5"))
    return requests, errors, {le: int(n) for le, n in buckets}


def _grown(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    return {le: n - before.get(le, 0) for le, n in after.items()}


def _p99_s(buckets: dict[str, int]) -> float:
    return histogram_quantile(0.99, [(float(le), float(n)) for le, n in buckets.items()])


def _slowest_bound(buckets: dict[str, int]) -> str:
    """The upper bound of the slowest bucket holding a request of these cumulative counts."""
    pairs = sorted((float(le), n) for le, n in buckets.items())
    below = 0
    slowest = "none"
    for le, n in pairs:
        if n > below:
            slowest = "+Inf" if math.isinf(le) else f"{le:g}"
        below = n
    return slowest


def test_slow_senders_and_a_slow_reader_do_not_move_the_latency(served: Project) -> None:
    # Given the stable track's counts so far
    requests_before, _, before = _counted(served, "stable")
    # When 4 clients each send `G`, wait 1.5 s and send the rest of their GET, one sends
    # a POST's header and the first byte of its body, waits 1.5 s and sends the rest,
    # one reads a 16 MiB response a byte per 0.2 s for its first 8 bytes, and 20
    # ordinary requests go through meanwhile
    with ThreadPoolExecutor(max_workers=SLOW_SENDERS + 2) as pool:
        senders = [
            pool.submit(send_slowly, served.listen_port, "/", PAUSE_S) for _ in range(SLOW_SENDERS)
        ]
        senders.append(pool.submit(send_slowly, served.listen_port, "/", PAUSE_S, b"x" * 1000))
        reader = pool.submit(read_slowly, served.listen_port, "/big")
        with httpx.Client(timeout=5.0) as client:
            fast = [client.get(served.url + "/").status_code for _ in range(FAST_REQUESTS)]
        slow = [future.result() for future in senders]
        big = reader.result()
    # Then every client got its whole answer
    assert fast == [200] * FAST_REQUESTS
    assert all(r.status == 200 and r.body_bytes == r.content_length for r in slow), slow
    assert (big.status, big.body_bytes) == (200, BIG_BYTES), big
    # And the router counted each request once, with the time the service took: none
    # of them above 0.25 s, where a clock started at the client's first byte would put
    # every slow client (at about 1.5 s or more)
    requests_after, _, after = _counted(served, "stable")
    total = len(slow) + 1 + FAST_REQUESTS
    assert requests_after - requests_before == total
    grown = _grown(before, after)
    assert grown["+Inf"] == total, grown
    summary = f"p99 {_p99_s(grown) * 1000:.1f} ms, slowest bucket le={_slowest_bound(grown)}"
    assert grown[str(SERVICE_BOUND_S)] == total, f"{summary}: {grown}"


def _put_routes(project: Project, routes: Any) -> None:
    transport = httpx.HTTPTransport(uds=str(project.state_dir / "nginx" / "admin.sock"))
    with httpx.Client(transport=transport, timeout=5.0) as client:
        response = client.put("http://nginx/routes", content=json.dumps(routes))
    assert response.status_code == 200, response.text


def test_a_5xx_that_reached_no_replica_is_an_error_without_a_latency(served: Project) -> None:
    # Given routes whose only stable endpoint has nothing listening, seen down by nginx
    kept = served.admin_get("/routes").json()["routes"]
    dead = f"127.0.0.1:{free_port()}"
    _put_routes(served, {"weights": {"canary": 0}, "endpoints": {"stable": [dead], "canary": []}})
    try:
        wait_for(
            lambda: dead in (served.admin_get("/routes").json()["down"] or []),
            timeout=10,
            what="nginx to see the endpoint down",
        )
        requests_before, errors_before, before = _counted(served, "stable")
        # When clients ask for it
        statuses = [httpx.get(served.url + "/", timeout=5.0).status_code for _ in range(5)]
        requests_after, errors_after, after = _counted(served, "stable")
    finally:
        _put_routes(served, kept)
    # Then the router's own answers (5xx) count as requests and errors of the track
    assert {status // 100 for status in statuses} == {5}, statuses
    assert (requests_after - requests_before, errors_after - errors_before) == (5, 5)
    # But no service time was spent on them, so the latency histogram has none of them
    assert _grown(before, after)["+Inf"] == 0
    # And the service is reachable again once its routes are back
    wait_for(
        lambda: httpx.get(served.url + "/", timeout=5.0).status_code == 200,
        timeout=10,
        what="the restored routes",
    )
