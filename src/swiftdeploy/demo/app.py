"""Demo service: one process per replica, instrumented with prometheus_client.

Endpoints: `/` (JSON with the version), `/healthz`, `/metrics`, and `/chaos`, which
exists only when the runtime started this replica with SWIFTDEPLOY_CHAOS_TOKEN set,
and then needs that token as a bearer token. Every response carries X-App-Version.
"""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import hmac
import os
import random
import re
import sys
import time
from collections.abc import MutableMapping
from dataclasses import dataclass
from typing import Any

import uvicorn
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Match, Route
from starlette.types import ASGIApp, Receive, Scope, Send

# Fine buckets around typical web latencies, so a P99 read from them is close to exact.
LATENCY_BUCKETS = (
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.25, 0.3,
    0.4, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0,
)  # fmt: skip
UNCOUNTED_ROUTES = {"/healthz", "/metrics"}
CHAOS_TOKEN_ENV = "SWIFTDEPLOY_CHAOS_TOKEN"  # noqa: S105 - a variable name, not a secret
# "300ms/60s": every request this much slower for the process's first seconds, as a
# real service is while its JIT, caches and pools warm up (set it in service.env).
COLD_START_ENV = "SWIFTDEPLOY_DEMO_COLD_START"
PORT_ENV = "PORT"
PR_SET_DUMPABLE = 4  # <linux/prctl.h>


@dataclass
class Chaos:
    error_rate: float = 0.0
    latency_ms: float = 0.0
    until: float | None = None

    def active(self) -> bool:
        if self.until is not None and time.monotonic() >= self.until:
            self.error_rate, self.latency_ms, self.until = 0.0, 0.0, None
        return self.error_rate > 0 or self.latency_ms > 0


class Metrics:
    def __init__(self, version: str) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "http_requests_total",
            "HTTP requests served",
            ["method", "route", "code"],
            registry=self.registry,
        )
        self.duration = Histogram(
            "http_request_duration_seconds",
            "HTTP request duration",
            ["method", "route"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        info = Gauge("app_info", "Application version", ["version"], registry=self.registry)
        info.labels(version=version).set(1)


class Instrumentation:
    """ASGI middleware: counts requests by route template (never the raw path)."""

    def __init__(self, app: ASGIApp, metrics: Metrics, version: str) -> None:
        self.app = app
        self.metrics = metrics
        self.version_header = (b"x-app-version", version.encode())

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        route = _route_template(scope)
        started = time.perf_counter()
        status = 500

        async def send_with_header(message: MutableMapping[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                headers = list(message.get("headers", []))
                headers.append(self.version_header)
                message["headers"] = headers
            await send(message)

        try:
            await self.app(scope, receive, send_with_header)
        finally:
            if route not in UNCOUNTED_ROUTES:
                method = scope["method"]
                self.metrics.requests.labels(method, route, str(status)).inc()
                self.metrics.duration.labels(method, route).observe(time.perf_counter() - started)


def _route_template(scope: Scope) -> str:
    app = scope.get("app")
    for route in getattr(app, "routes", []):
        match, _ = route.matches(scope)
        if match == Match.FULL:
            return str(route.path)
    return "<unmatched>"


def cold_start(text: str | None) -> Chaos:
    """The chaos a cold start plays: "300ms/60s" is 300 ms more for the first 60 s."""
    if not text:
        return Chaos()
    # Parsed here, not with swiftdeploy.durations: the demo image carries this module
    # alone, without the swiftdeploy package.
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)ms\s*/\s*(\d+(?:\.\d+)?)s\s*", text)
    if match is None:
        raise SystemExit(f"{COLD_START_ENV}={text!r}: expected LATENCYms/SECONDSs, e.g. 300ms/60s")
    latency_ms, duration_s = float(match.group(1)), float(match.group(2))
    return Chaos(latency_ms=latency_ms, until=time.monotonic() + duration_s)


def build_app(version: str, chaos_token: str | None, chaos: Chaos | None = None) -> Starlette:
    metrics = Metrics(version)
    chaos = chaos or Chaos()

    async def index(request: Request) -> Response:
        if chaos.active():
            if chaos.latency_ms:
                await asyncio.sleep(chaos.latency_ms / 1000)
            if chaos.error_rate and random.random() < chaos.error_rate:
                return JSONResponse({"error": "chaos", "version": version}, status_code=500)
        return JSONResponse({"service": "swiftdeploy-demo", "version": version})

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok", "version": version})

    async def metrics_endpoint(request: Request) -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    async def chaos_endpoint(request: Request) -> Response:
        assert chaos_token is not None
        supplied = request.headers.get("authorization", "")
        if not hmac.compare_digest(supplied.encode(), f"Bearer {chaos_token}".encode()):
            return JSONResponse({"error": "unauthorized"}, status_code=401)
        if request.method == "DELETE":
            chaos.error_rate, chaos.latency_ms, chaos.until = 0.0, 0.0, None
            return JSONResponse({"chaos": "recovered"})
        try:
            body = await request.json()
            error_rate = float(body.get("error_rate", 0.0))
            latency_ms = float(body.get("latency_ms", 0.0))
            duration = body.get("duration_s")
            if not 0 <= error_rate <= 1 or latency_ms < 0:
                raise ValueError("error_rate must be 0..1 and latency_ms >= 0")
        except (ValueError, TypeError, AttributeError) as exc:
            return JSONResponse({"error": f"bad chaos request: {exc}"}, status_code=400)
        chaos.error_rate, chaos.latency_ms = error_rate, latency_ms
        chaos.until = time.monotonic() + float(duration) if duration else None
        return JSONResponse({"chaos": {"error_rate": error_rate, "latency_ms": latency_ms}})

    routes = [
        Route("/", index),
        Route("/healthz", healthz),
        Route("/metrics", metrics_endpoint),
    ]
    if chaos_token:
        routes.append(Route("/chaos", chaos_endpoint, methods=["POST", "DELETE"]))
    app = Starlette(routes=routes)
    app.add_middleware(Instrumentation, metrics=metrics, version=version)
    return app


def forbid_tracing() -> None:
    """Make this process undumpable (Linux): its /proc/PID/environ, mem and root then
    belong to root, so not even another process of its own uid can read its secrets
    through them or write its memory (docker: a process of the same uid on the host,
    SECURITY.md). Called first thing in main(), so the window is the interpreter's start
    and the imports. In the demo image this is the container's process for good: the
    env wrapper and the image's shell-form command both exec into it. Refuses to serve
    when the kernel refuses."""
    if not sys.platform.startswith("linux"):
        return
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0:
        reason = os.strerror(ctypes.get_errno())
        raise SystemExit(f"swiftdeploy-demo: prctl(PR_SET_DUMPABLE, 0) failed: {reason}")


def main() -> None:
    forbid_tracing()
    parser = argparse.ArgumentParser(description="SwiftDeploy demo service")
    # PORT by default, as the local runtime gives it: the environment, unlike the
    # command line, is not readable by other users (/proc/PID/environ is 0400).
    parser.add_argument("--port", type=int, default=os.environ.get(PORT_ENV))
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--version", required=True)
    args = parser.parse_args()
    if args.port is None:
        parser.error(f"no port: pass --port or set {PORT_ENV}")
    warming = cold_start(os.environ.get(COLD_START_ENV))
    app = build_app(args.version, os.environ.get(CHAOS_TOKEN_ENV) or None, warming)
    uvicorn.run(
        app,
        host=args.host,
        port=args.port,
        log_level="warning",
        access_log=False,
        timeout_keep_alive=75,
        timeout_graceful_shutdown=5,
    )


if __name__ == "__main__":
    main()
