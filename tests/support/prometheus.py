"""A real Prometheus on loopback for a test, and an exporter for it to scrape."""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from swiftdeploy.ports import free_port

READY_TIMEOUT_S = 60.0


@contextlib.contextmanager
def running_prometheus(directory: Path, scrape_configs: list[dict[str, Any]]) -> Iterator[str]:
    """Prometheus (the system's, `make setup`) scraping every second with its data and log
    in `directory`; yields its URL once ready and stops it after. `make test-setup`
    installs Prometheus: a machine without it fails the test (a skip would hide it)."""
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.fail("prometheus is not installed: run `make setup`")
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "scrape_configs": scrape_configs,
    }
    (directory / "prometheus.yml").write_text(json.dumps(config))
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with (directory / "prometheus.log").open("wb") as log:
        process = subprocess.Popen(
            [
                binary,
                f"--config.file={directory / 'prometheus.yml'}",
                f"--storage.tsdb.path={directory / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--log.level=warn",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            _wait_ready(url, process)
            yield url
        finally:
            process.terminate()
            process.wait(timeout=20)


def _wait_ready(url: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"Prometheus exited with code {process.returncode}")
        try:
            if httpx.get(f"{url}/-/ready", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    pytest.fail(f"Prometheus did not become ready in {READY_TIMEOUT_S:.0f} s")


@contextlib.contextmanager
def serving_exposition(render: Callable[[str], bytes | None]) -> Iterator[int]:
    """An exporter on a loopback port (yielded): GET <path> answers `render(path)` as
    Prometheus text, or 404 when it gives None."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = render(self.path)
            self.send_response(404 if body is None else 200)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.send_header("Content-Length", str(len(body or b"")))
            self.end_headers()
            self.wfile.write(body or b"")

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.1,), daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
