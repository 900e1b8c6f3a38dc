"""Notification receivers on loopback for the tests: Slack-shaped, Teams-shaped and a
generic webhook. Each checks the body's shape and the signature (`verify_signature`),
answers 400/401 when they are wrong, and dedupes by Idempotency-Key as a receiver
should. It can be told to fail: a share of deliveries answered 500, a share hung past
the sender's timeout (then answered 503), both drawn from a seeded RNG so a run is
repeatable; or be `down` (503 to everything) or `refusing` (422 to everything)."""

from __future__ import annotations

import json
import random
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from swiftdeploy.notify.http import IDEMPOTENCY_HEADER, verify_signature


@dataclass
class Delivery:
    """One POST as the receiver saw it."""

    key: str
    event: str
    body: bytes
    at: float  # time.time() when it arrived
    status: int
    signed: bool


@dataclass
class Receiver:
    shape: str  # "slack", "teams" or "webhook"
    key: bytes
    fail: float = 0.0  # share answered 500
    hang: float = 0.0  # share hung for hang_s, then 503
    hang_s: float = 2.0
    seed: int = 23
    down: bool = False
    refusing: bool = False
    deliveries: list[Delivery] = field(default_factory=list)
    accepted: list[str] = field(default_factory=list)  # keys, first acceptance, in order
    accepted_at: dict[str, float] = field(default_factory=dict)
    duplicates: list[str] = field(default_factory=list)  # keys accepted again (deduped)
    bodies: dict[str, Any] = field(default_factory=dict)  # key -> parsed body accepted

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                status = receiver.answer(dict(self.headers.items()), body)
                try:
                    self.send_response(status)
                    self.send_header("Content-Length", "2")
                    self.end_headers()
                    self.wfile.write(b"{}")
                except OSError:
                    pass  # the sender gave up (timed out) before the answer

            def log_message(self, format: str, *args: Any) -> None:
                return None

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/hook/{self.shape}"

    def __enter__(self) -> Receiver:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def answer(self, headers: dict[str, str], body: bytes) -> int:
        lowered = {k.lower(): v for k, v in headers.items()}
        key = lowered.get(IDEMPOTENCY_HEADER.lower(), "")
        event = lowered.get("x-swiftdeploy-event", "")
        signed = verify_signature(self.key, body, headers)
        with self._lock:
            draw = self._rng.random()
        status = self._status(signed, body, key, draw)
        if status == 0:  # hang past the sender's timeout
            time.sleep(self.hang_s)
            status = 503
        with self._lock:
            self.deliveries.append(Delivery(key, event, body, time.time(), status, signed))
            if status == 200:
                if key in self.accepted:
                    self.duplicates.append(key)
                else:
                    self.accepted.append(key)
                    self.accepted_at[key] = time.time()
                    self.bodies[key] = json.loads(body)
        return status

    def _status(self, signed: bool, body: bytes, key: str, draw: float) -> int:
        if self.down:
            return 503
        if self.refusing:
            return 422
        if not signed:
            return 401
        if not self._shaped(body, key):
            return 400
        if draw < self.hang:
            return 0
        if draw < self.hang + self.fail:
            return 500
        return 200

    def _shaped(self, body: bytes, key: str) -> bool:
        try:
            payload = json.loads(body)
        except ValueError:
            return False
        if self.shape == "slack":
            return isinstance(payload.get("text"), str) and isinstance(payload.get("blocks"), list)
        if self.shape == "teams":
            attachments = payload.get("attachments") or [{}]
            return bool(
                payload.get("type") == "message"
                and attachments[0].get("contentType") == "application/vnd.microsoft.card.adaptive"
                and attachments[0].get("content", {}).get("type") == "AdaptiveCard"
            )
        return bool(payload.get("specversion") == "1.0" and payload.get("id") == key)

    def attempts(self, key: str | None = None) -> int:
        with self._lock:
            return sum(1 for d in self.deliveries if key is None or d.key == key)
