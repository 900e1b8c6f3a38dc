"""Waiting for a local HTTP endpoint to answer 200: replicas, nginx, OPA, Prometheus."""

from __future__ import annotations

import time

import httpx


def wait_for_ok(
    client: httpx.Client, url: str, timeout: float, interval: float = 0.05
) -> str | None:
    """Poll `url` until it answers 200: None then, else the last failure seen
    (an HTTP status or the transport error's name), for the caller's error message."""
    deadline = time.monotonic() + timeout
    last = "no answer"
    while time.monotonic() < deadline:
        try:
            response = client.get(url, timeout=1.0)
            if response.status_code == 200:
                return None
            last = f"HTTP {response.status_code}"
        except httpx.HTTPError as exc:
            last = type(exc).__name__
        time.sleep(interval)
    return last
