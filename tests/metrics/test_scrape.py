"""The scrape provider against a real HTTP server on 127.0.0.1.

Given replicas serving exposition text, when the provider measures a track, then the
numbers are what the replicas served in the window, and a failure is a measurement.
The clock and sleep are fakes so the waits cost nothing; one test uses the real ones.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from bench.support.hostile_metrics import distinct_requests, fill

from swiftdeploy.metrics.exposition import TargetSample
from swiftdeploy.metrics.scrape import ScrapeProvider
from tests.metrics.conftest import MetricsServer, render_exposition


class FakeTime:
    """A clock that only moves when slept on (or told to), running `on_sleep` each time."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self.now = start
        self.slept: list[float] = []
        self.on_sleep: Callable[[], None] = lambda: None

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds
        self.on_sleep()

    def advance(self, seconds: float) -> None:
        self.now += seconds


class Replica:
    """A demo replica's counters; `publish` puts its /metrics on the server."""

    def __init__(self, server: MetricsServer, path: str) -> None:
        self.server = server
        self.path = path
        self.ok = 0
        self.errors = 0
        self.latencies: list[float] = []
        self.url = server.url(path)
        self.publish()

    def serve(self, ok: int = 0, errors: int = 0, latency_s: float = 0.02) -> None:
        self.ok += ok
        self.errors += errors
        self.latencies += [latency_s] * (ok + errors)
        self.publish()

    def restart(self) -> None:
        self.ok = self.errors = 0
        self.latencies = []
        self.publish()

    def publish(self) -> None:
        requests = {("GET", "/", "200"): self.ok, ("GET", "/", "503"): self.errors}
        text = render_exposition(
            {key: count for key, count in requests.items() if count},
            {("GET", "/"): self.latencies} if self.latencies else {},
        )
        self.server.serve(self.path, text)


@pytest.fixture
def fake() -> FakeTime:
    return FakeTime()


def provider_for(
    client: httpx.Client, fake: FakeTime, tracks: dict[str, list[str]], **options: object
) -> ScrapeProvider:
    return ScrapeProvider(
        lambda track: tracks.get(track, []),
        client,
        clock=fake.clock,
        sleep=fake.sleep,
        **options,  # type: ignore[arg-type]
    )


def test_measures_a_track_across_replicas(
    metrics_server: MetricsServer, client: httpx.Client, fake: FakeTime
) -> None:
    a, b = Replica(metrics_server, "/a/metrics"), Replica(metrics_server, "/b/metrics")
    a.serve(ok=100)  # before the first scrape: not in any window
    provider = provider_for(client, fake, {"canary": [a.url, b.url]})
    provider.measure("canary", 30)  # first scrape + bootstrap pair
    fake.advance(10)
    a.serve(ok=60, errors=4, latency_s=0.02)
    b.serve(ok=30, errors=6, latency_s=0.4)
    fake.advance(10)

    m = provider.measure("canary", 30)

    assert m.status == "ok", m.detail
    assert (m.requests, m.errors) == (100, 10)
    assert m.error_rate == pytest.approx(0.1)
    assert m.elapsed_s == pytest.approx(21.0)  # from the bootstrap's first scrape
    assert m.rps == pytest.approx(100 / 21)
    assert m.buckets["0.025"] == 64
    assert m.buckets["+Inf"] == 100
    assert m.quantiles is not None
    assert m.quantiles["p50"] == pytest.approx(10 + 15 * 50 / 64)  # in (10, 25] ms
    assert m.quantiles["p99"] == pytest.approx(300 + 100 * 35 / 36)  # in (300, 400] ms
    assert m.evidence == (a.url, b.url)
    assert "2 replica(s), 3 scrapes over 21 s" in m.detail
    assert "the last 21 s of the 30 s asked for" in m.detail


def test_first_measure_waits_for_a_second_scrape(
    metrics_server: MetricsServer, client: httpx.Client, fake: FakeTime
) -> None:
    a = Replica(metrics_server, "/a/metrics")
    fake.on_sleep = lambda: a.serve(ok=70, errors=7)
    provider = provider_for(client, fake, {"canary": [a.url]}, bootstrap_s=0.2)

    m = provider.measure("canary", 30)

    assert fake.slept == [1.0]  # never less than a second
    assert m.status == "ok", m.detail
    assert (m.requests, m.errors, m.elapsed_s) == (77, 7, 1.0)
    # and it says plainly that this is not the 30 s asked for
    assert "the window reaches back before the first saved reading" in m.detail
    assert "the last 1 s of the 30 s asked for" in m.detail


def test_a_counter_reset_between_measures(
    metrics_server: MetricsServer, client: httpx.Client, fake: FakeTime
) -> None:
    a = Replica(metrics_server, "/a/metrics")
    a.serve(ok=500, errors=50)
    provider = provider_for(client, fake, {"canary": [a.url]})
    provider.measure("canary", 60)
    fake.advance(5)
    a.serve(ok=20)
    provider.measure("canary", 60)
    fake.advance(5)
    a.restart()
    a.serve(ok=30, errors=3)
    fake.advance(5)

    m = provider.measure("canary", 60)

    assert m.status == "ok", m.detail
    assert (m.requests, m.errors) == (20 + 33, 3)
    assert "counter reset" in m.detail


def test_errors_older_than_the_window_do_not_count(
    metrics_server: MetricsServer, client: httpx.Client, fake: FakeTime
) -> None:
    a = Replica(metrics_server, "/a/metrics")
    provider = provider_for(client, fake, {"canary": [a.url]})
    provider.measure("canary", 10)
    for _ in range(3):  # an incident, then calm
        fake.advance(5)
        a.serve(ok=10, errors=10)
        provider.measure("canary", 10)
    for _ in range(3):
        fake.advance(5)
        a.serve(ok=20)
        m = provider.measure("canary", 10)
    assert m.status == "ok"
    assert (m.requests, m.errors, m.elapsed_s) == (40, 0, 10.0)


def test_too_few_requests_is_no_data(
    metrics_server: MetricsServer, client: httpx.Client, fake: FakeTime
) -> None:
    a = Replica(metrics_server, "/a/metrics")
    fake.on_sleep = lambda: a.serve(errors=9)
    m = provider_for(client, fake, {"canary": [a.url]}, min_requests=50).measure("canary", 30)
    assert m.status == "no_data"
    assert m.requests == 9
    assert m.error_rate is None


def test_no_replicas_is_no_data(client: httpx.Client, fake: FakeTime) -> None:
    m = provider_for(client, fake, {}).measure("canary", 30)
    assert m.status == "no_data"
    assert "no replicas of 'canary'" in m.detail


def unused_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_a_replica_that_is_down_is_a_provider_error(
    metrics_server: MetricsServer, client: httpx.Client, fake: FakeTime
) -> None:
    a = Replica(metrics_server, "/a/metrics")
    down = f"http://127.0.0.1:{unused_port()}/metrics"
    m = provider_for(client, fake, {"canary": [a.url, down]}).measure("canary", 30)
    assert m.status == "provider_error"
    assert down in m.detail
    assert "ConnectError" in m.detail
    assert m.evidence == (a.url, down)
    assert fake.slept == []  # no point waiting for a second scrape


@pytest.mark.parametrize(
    ("status", "body", "message"),
    [
        (200, "<html>hello</html>", "not a sample line"),
        (200, "", "no http_requests_total"),
        (200, b"\xff\xfe\x00garbage", "not UTF-8"),
        (503, "unavailable", "HTTP 503"),
        (404, "", "HTTP 404"),
    ],
)
def test_garbage_or_refusal_is_a_provider_error(
    metrics_server: MetricsServer,
    client: httpx.Client,
    fake: FakeTime,
    status: int,
    body: str | bytes,
    message: str,
) -> None:
    url = metrics_server.serve("/bad", body, status)
    m = provider_for(client, fake, {"stable": [url]}).measure("stable", 30)
    assert m.status == "provider_error"
    assert message in m.detail


def test_a_slow_replica_times_out(
    metrics_server: MetricsServer, client: httpx.Client, fake: FakeTime
) -> None:
    a = Replica(metrics_server, "/a/metrics")
    metrics_server.delay_s = 1.0
    m = provider_for(client, fake, {"canary": [a.url]}, timeout_s=0.2).measure("canary", 30)
    assert m.status == "provider_error"
    assert "Timeout" in m.detail


def test_an_oversized_body_is_refused(
    metrics_server: MetricsServer, client: httpx.Client, fake: FakeTime
) -> None:
    a = Replica(metrics_server, "/a/metrics")
    m = provider_for(client, fake, {"canary": [a.url]}, max_bytes=100).measure("canary", 30)
    assert m.status == "provider_error"
    assert "body over 100 bytes" in m.detail


def test_measure_never_raises(client: httpx.Client, fake: FakeTime) -> None:
    def broken(track: str) -> list[str]:
        raise RuntimeError("runtime state unreadable")

    provider = ScrapeProvider(broken, client, clock=fake.clock, sleep=fake.sleep)
    m = provider.measure("canary", 30)
    assert m.status == "provider_error"
    assert "RuntimeError: runtime state unreadable" in m.detail
    assert provider.measure("canary", 0).status == "provider_error"
    assert provider.is_online() is False


def test_is_online(metrics_server: MetricsServer, client: httpx.Client, fake: FakeTime) -> None:
    a = Replica(metrics_server, "/a/metrics")
    down = f"http://127.0.0.1:{unused_port()}/metrics"
    assert provider_for(client, fake, {"stable": [down], "canary": [a.url]}).is_online()
    assert not provider_for(client, fake, {"stable": [down]}).is_online()
    assert not provider_for(client, fake, {}).is_online()


def test_a_one_shot_run_measures_against_the_saved_history(
    metrics_server: MetricsServer, client: httpx.Client, fake: FakeTime, tmp_path: Path
) -> None:
    saved = tmp_path / "state" / "scrapes.json"
    a = Replica(metrics_server, "/a/metrics")
    a.serve(ok=10)
    provider_for(client, fake, {"canary": [a.url]}, history_path=saved).measure("canary", 30)
    assert json.loads(saved.read_text())["version"] == 1
    slept = len(fake.slept)
    fake.advance(20)
    a.serve(ok=90, errors=10)

    later = provider_for(client, fake, {"canary": [a.url]}, history_path=saved)
    m = later.measure("canary", 30)

    assert len(fake.slept) == slept  # the saved scrape is the baseline: no waiting
    assert m.status == "ok", m.detail
    assert (m.requests, m.errors) == (100, 10)
    assert m.elapsed_s == pytest.approx(21.0)


def test_an_unreadable_history_is_set_aside(
    metrics_server: MetricsServer, client: httpx.Client, fake: FakeTime, tmp_path: Path
) -> None:
    saved = tmp_path / "scrapes.json"
    saved.write_text("{not json")
    a = Replica(metrics_server, "/a/metrics")
    fake.on_sleep = lambda: a.serve(ok=5)
    provider = provider_for(client, fake, {"canary": [a.url]}, history_path=saved)
    first = provider.measure("canary", 30)
    assert first.status == "ok"
    assert "ignored unreadable scrape history" in first.detail
    assert "ignored" not in provider.measure("canary", 30).detail  # told once
    assert json.loads(saved.read_text())["tracks"]["canary"]


def test_a_history_kept_for_other_routes_is_not_used(
    metrics_server: MetricsServer, client: httpx.Client, fake: FakeTime, tmp_path: Path
) -> None:
    saved = tmp_path / "scrapes.json"
    a = Replica(metrics_server, "/a/metrics")
    provider_for(client, fake, {"canary": [a.url]}, history_path=saved).measure("canary", 30)
    slept = len(fake.slept)
    other = provider_for(client, fake, {"canary": [a.url]}, history_path=saved, routes=["/"])
    m = other.measure("canary", 30)
    assert len(fake.slept) == slept + 1  # started over: bootstrapped
    assert "kept for other routes" in m.detail


def test_with_the_real_clock(metrics_server: MetricsServer, client: httpx.Client) -> None:
    a = Replica(metrics_server, "/a/metrics")
    provider = ScrapeProvider(lambda track: [a.url], client)
    started = time.monotonic()
    m = provider.measure("canary", 30)
    assert 1.0 <= time.monotonic() - started < 5
    assert m.status == "no_data"
    assert m.elapsed_s is not None
    assert m.elapsed_s == pytest.approx(1.0, abs=0.5)
    assert m.window_start is not None
    assert abs(m.window_start - time.time()) < 10


def test_a_dripping_metrics_endpoint_is_cut_off_by_the_deadline(client: httpx.Client) -> None:
    # Given a replica whose /metrics sends a byte every 0.2 s and never finishes
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]

    def drip() -> None:
        conn, _ = server.accept()
        with conn:
            conn.recv(4096)
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n")
            for _ in range(50):  # at most 10 s
                try:
                    conn.sendall(b"#")
                except OSError:
                    return
                time.sleep(0.2)

    threading.Thread(target=drip, daemon=True).start()
    provider = ScrapeProvider(
        lambda track: [f"http://127.0.0.1:{port}/metrics"], client, timeout_s=1.0
    )
    # When it is measured, Then the answer is a provider error within about the deadline
    started = time.monotonic()
    measured = provider.measure_since("canary", 0.0)
    took = time.monotonic() - started
    server.close()
    assert measured.status == "provider_error"
    assert "no whole answer within 1 s" in measured.detail
    assert took < 3


def test_a_hostile_metrics_body_is_a_provider_error_not_seconds_of_cpu(
    metrics_server: MetricsServer, client: httpx.Client, fake: FakeTime
) -> None:
    # Given a canary whose /metrics is 16 MiB of 240,000 distinct series (issue 22)
    url = metrics_server.serve("/hostile", fill(distinct_requests))
    provider = provider_for(client, fake, {"canary": [url]})
    # When it is measured, Then the look is a provider error (which never promotes)
    measured = provider.measure("canary", 30)
    assert measured.status == "provider_error"
    assert f"{url}: /metrics too large to read" in measured.detail
    # And the provider's memo did not take in the body's series
    assert len(provider._parser._memo) <= 1


def test_the_deadline_covers_the_parse_as_well_as_the_read(
    metrics_server: MetricsServer,
    client: httpx.Client,
    fake: FakeTime,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given a replica, and a provider whose parser notes the deadline it is given
    a = Replica(metrics_server, "/a/metrics")
    a.serve(ok=5)
    provider = provider_for(client, fake, {"canary": [a.url]}, timeout_s=2.0)
    parse = provider._parser.parse
    deadlines: list[float | None] = []

    def noting(text: str, target: str, *, deadline: float | None = None) -> TargetSample:
        deadlines.append(deadline)
        return parse(text, target, deadline=deadline)

    monkeypatch.setattr(provider._parser, "parse", noting)
    # When it is scraped
    before = time.monotonic()
    assert provider.is_online()
    assert provider.measure_since("canary", 0.0).status == "no_data"
    # Then each parse had to end within timeout_s of its request, as the read must
    assert len(deadlines) == 2
    assert all(d is not None and before < d <= time.monotonic() + 2.0 for d in deadlines)
    # And when the read has used the whole deadline, a parse of a few thousand lines
    # (the parser looks at the clock every 1,024 lines, 32 of ours) is a provider error
    metrics_server.serve(a.path, render_exposition({("GET", "/", "200"): 5}) + "a 1\n" * 3000)

    def late(text: str, target: str, *, deadline: float | None = None) -> TargetSample:
        assert deadline is not None
        return parse(text, target, deadline=deadline - 2.0)

    monkeypatch.setattr(provider._parser, "parse", late)
    measured = provider.measure_since("canary", 0.0)
    assert measured.status == "provider_error"
    assert f"{a.url}: /metrics not read within the scrape's deadline" in measured.detail
