"""A gating hook's receiver on loopback, for tests: a threaded HTTP server that keeps
every call (path, headers, JSON body) and answers what the test set, per path."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True)
class Answer:
    status: int = 200
    body: str = ""
    delay_s: float = 0.0  # longer than the hook's timeout: a timeout


@dataclass(frozen=True)
class Call:
    path: str
    headers: dict[str, str]
    raw: bytes
    at: float

    @property
    def json(self) -> Any:
        return json.loads(self.raw)


@dataclass
class HookServer:
    answers: dict[str, Answer] = field(default_factory=dict)
    calls: list[Call] = field(default_factory=list)
    port: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def answer(self, path: str, status: int = 200, body: Any = "", delay_s: float = 0.0) -> None:
        text = body if isinstance(body, str) else json.dumps(body)
        with self.lock:
            self.answers[path] = Answer(status, text, delay_s)

    def calls_to(self, path: str) -> list[Call]:
        with self.lock:
            return [call for call in self.calls if call.path == path]

    def wait_for_calls(self, path: str, count: int, timeout_s: float = 20.0) -> list[Call]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            calls = self.calls_to(path)
            if len(calls) >= count:
                return calls
            time.sleep(0.02)
        raise AssertionError(f"{path}: {len(self.calls_to(path))} calls, not {count}")


@contextmanager
def hook_server() -> Iterator[HookServer]:
    """A running receiver on 127.0.0.1 (an unset path answers 200), stopped after."""
    server = HookServer()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            return None

        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            with server.lock:
                server.calls.append(Call(self.path, dict(self.headers), raw, time.time()))
                answer = server.answers.get(self.path, Answer())
            if answer.delay_s:
                time.sleep(answer.delay_s)
            body = answer.body.encode()
            try:
                self.send_response(answer.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
            except OSError:
                pass  # the caller timed out and went away

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    server.port = httpd.server_address[1]
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        httpd.shutdown()
        httpd.server_close()
