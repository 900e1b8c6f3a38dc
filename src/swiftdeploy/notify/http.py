"""One signed POST to a receiver: the body, an idempotency key and an HMAC-SHA256
signature over the timestamp and the body (the scheme GitHub and Stripe webhooks use),
with a timeout; the answer read up to a bound. Errors never carry the URL (it may be a
credential, as Slack's and Teams' incoming-webhook URLs are)."""

from __future__ import annotations

import hashlib
import hmac
import time
from dataclasses import dataclass
from typing import Any

import httpx

from swiftdeploy import __version__
from swiftdeploy.durations import format_duration

SIGNATURE_HEADER = "X-SwiftDeploy-Signature"
TIMESTAMP_HEADER = "X-SwiftDeploy-Timestamp"
IDEMPOTENCY_HEADER = "Idempotency-Key"
EVENT_HEADER = "X-SwiftDeploy-Event"
# A receiver refuses a signature older than this (a replayed delivery).
SIGNATURE_TOLERANCE_S = 300
MAX_ANSWER_BYTES = 64 * 1024


def signature(key: bytes, timestamp: int, body: bytes) -> str:
    """`sha256=<hex>`: HMAC-SHA256 of `<timestamp>.<body>` with the signing key."""
    digest = hmac.new(key, str(timestamp).encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def verify_signature(
    key: bytes,
    body: bytes,
    headers: httpx.Headers | dict[str, str],
    now: float | None = None,
    tolerance_s: float = SIGNATURE_TOLERANCE_S,
) -> bool:
    """What a receiver runs: the signature matches the body and the timestamp, and the
    timestamp is recent (docs/notifications.md shows the same in a few lines)."""
    lowered = {name.lower(): value for name, value in dict(headers).items()}
    try:
        timestamp = int(lowered[TIMESTAMP_HEADER.lower()])
        given = lowered[SIGNATURE_HEADER.lower()]
    except (KeyError, ValueError):
        return False
    if abs((time.time() if now is None else now) - timestamp) > tolerance_s:
        return False
    return hmac.compare_digest(signature(key, timestamp, body), given)


@dataclass(frozen=True)
class Reply:
    """A receiver's answer: its status (None: no answer), body and the time it took."""

    status: int | None
    body: str
    error: str | None
    elapsed_s: float

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300

    @property
    def retryable(self) -> bool:
        """No answer, 408, 429 or 5xx: worth another try; other 4xx will not change."""
        return self.status is None or self.status in (408, 429) or self.status >= 500

    def summary(self) -> str:
        if self.status is None:
            return f"no answer: {self.error}"
        return f"HTTP {self.status}"

    def json(self) -> Any:
        """The body as JSON, or None when it is not JSON."""
        import json

        try:
            return json.loads(self.body)
        except ValueError:
            return None


def post_signed(
    client: httpx.Client,
    url: str,
    body: bytes,
    *,
    key: bytes,
    idempotency_key: str,
    event_type: str,
    headers: dict[str, str] | None = None,
    timeout_s: float,
) -> Reply:
    """POST `body` (JSON) once; never raises for the receiver's faults."""
    timestamp = int(time.time())
    sent = {
        **(headers or {}),
        "Content-Type": "application/json",
        "User-Agent": f"swiftdeploy/{__version__}",
        IDEMPOTENCY_HEADER: idempotency_key,
        EVENT_HEADER: event_type,
        TIMESTAMP_HEADER: str(timestamp),
        SIGNATURE_HEADER: signature(key, timestamp, body),
    }
    started = time.monotonic()
    try:
        with client.stream("POST", url, content=body, headers=sent, timeout=timeout_s) as reply:
            answer = _bounded(reply)
            status = reply.status_code
    except httpx.TimeoutException:
        return Reply(
            None, "", f"timed out after {format_duration(timeout_s)}", time.monotonic() - started
        )
    except httpx.HTTPError as exc:
        # the exception's text may hold the URL: only its kind is kept
        return Reply(None, "", type(exc).__name__, time.monotonic() - started)
    return Reply(status, answer, None, time.monotonic() - started)


def _bounded(reply: httpx.Response) -> str:
    read = b""
    for chunk in reply.iter_bytes():
        read += chunk
        if len(read) >= MAX_ANSWER_BYTES:
            break
    return read[:MAX_ANSWER_BYTES].decode("utf-8", errors="replace")
