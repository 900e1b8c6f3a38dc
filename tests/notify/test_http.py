"""notify/http.py against a real loopback server: the signature round trip, a timeout
as a Reply with no status, and no URL (a credential) in any error."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest
from bench.support.receivers import Receiver

from swiftdeploy.durations import format_duration
from swiftdeploy.notify.http import post_signed, verify_signature
from swiftdeploy.ports import free_port

KEY = b"k" * 32


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    with httpx.Client() as made:
        yield made


def test_a_signed_post_verifies_at_the_receiver_and_a_wrong_key_does_not(
    client: httpx.Client,
) -> None:
    with Receiver("webhook", KEY) as receiver, Receiver("webhook", b"other") as other:
        body = b'{"specversion":"1.0","id":"abc"}'
        reply = post_signed(client, receiver.url, body, key=KEY, idempotency_key="abc",
                            event_type="t", timeout_s=5)  # fmt: skip
        assert (reply.status, reply.ok) == (200, True)
        sent = receiver.deliveries[0]
        assert (sent.key, sent.event, sent.signed) == ("abc", "t", True)
        refused = post_signed(client, other.url, body, key=KEY, idempotency_key="abc",
                              event_type="t", timeout_s=5)  # fmt: skip
        assert (refused.status, refused.retryable) == (401, False)
    # a changed body or an old timestamp does not verify
    headers = {"X-SwiftDeploy-Timestamp": str(int(time.time()) - 1000),
               "X-SwiftDeploy-Signature": "sha256=00"}  # fmt: skip
    assert not verify_signature(KEY, b"{}", headers)


def test_a_receiver_that_hangs_is_a_reply_with_no_status_within_the_timeout(
    client: httpx.Client,
) -> None:
    # it hangs far past the timeout, so "returned at the timeout" and "waited for the
    # answer" stay apart even on a busy machine
    with Receiver("webhook", KEY, hang=1.0, hang_s=8.0) as receiver:
        started = time.monotonic()
        body = b'{"specversion":"1.0","id":"a"}'
        reply = post_signed(client, receiver.url, body, key=KEY, idempotency_key="a",
                            event_type="t", timeout_s=0.3)  # fmt: skip
        took = time.monotonic() - started
    assert (reply.status, reply.retryable) == (None, True)
    assert reply.error == f"timed out after {format_duration(0.3)}"
    assert took < 5.0


def test_no_url_in_any_error(client: httpx.Client) -> None:
    secret_url = f"http://127.0.0.1:{free_port()}/services/T000/B000/s3cr3t-token"
    reply = post_signed(client, secret_url, b"{}", key=KEY, idempotency_key="a",
                        event_type="t", timeout_s=2)  # fmt: skip
    assert reply.status is None
    assert "s3cr3t" not in (reply.error or "") + reply.summary()
    assert reply.summary() == "no answer: ConnectError"
