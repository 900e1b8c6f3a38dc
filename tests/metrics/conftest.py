"""Fixtures for the metrics tests: exposition text made by prometheus_client itself (the
library the demo service uses) and a real HTTP server on 127.0.0.1 serving it."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

# The demo service's buckets (+Inf is implicit).
DEMO_BUCKETS = (
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.25, 0.3,
    0.4, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0,
)  # fmt: skip

Requests = Mapping[tuple[str, str, str], float]  # (method, route, code) -> count
Observations = Mapping[tuple[str, str], Sequence[float]]  # (method, route) -> seconds
Render = Callable[..., str]


def render_exposition(
    requests: Requests | None = None,
    observations: Observations | None = None,
    *,
    version: str = "v1",
) -> str:
    """What a demo replica's /metrics would say after serving these requests."""
    registry = CollectorRegistry()
    counter = Counter(
        "http_requests_total",
        "HTTP requests served",
        ["method", "route", "code"],
        registry=registry,
    )
    histogram = Histogram(
        "http_request_duration_seconds",
        "HTTP request duration",
        ["method", "route"],
        buckets=DEMO_BUCKETS,
        registry=registry,
    )
    Gauge("app_info", "Application version", ["version"], registry=registry).labels(version).set(1)
    for (method, route, code), count in (requests or {}).items():
        counter.labels(method, route, code).inc(count)
    for (method, route), values in (observations or {}).items():
        for value in values:
            histogram.labels(method, route).observe(value)
    return generate_latest(registry).decode()


@pytest.fixture
def render() -> Render:
    return render_exposition


@dataclass
class MetricsServer:
    """Serves whatever the test put at a path; counts the requests it got."""

    port: int = 0
    routes: dict[str, tuple[int, bytes]] = field(default_factory=dict)
    delay_s: float = 0.0
    hits: int = 0

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def serve(self, path: str, body: str | bytes, status: int = 200) -> str:
        self.routes[path] = (status, body.encode() if isinstance(body, str) else body)
        return self.url(path)


@pytest.fixture
def metrics_server() -> Iterator[MetricsServer]:
    state = MetricsServer()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            state.hits += 1
            status, body = state.routes.get(self.path, (404, b"not found\n"))
            if state.delay_s:
                time.sleep(state.delay_s)
            self.send_response(status)
            self.send_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    class Server(ThreadingHTTPServer):
        daemon_threads = True

        def handle_error(self, request: object, client_address: object) -> None:
            pass  # a client that timed out and left is part of some tests

    server = Server(("127.0.0.1", 0), Handler)
    state.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    with httpx.Client(trust_env=False) as http:
        yield http
