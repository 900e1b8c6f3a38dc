"""Gating hook calls (notify/hooks.py) against a real receiver on loopback: Given a
receiver's answer, When a hook is called, Then the outcome, the payload and the
signature are as documented (docs/notifications.md, "Gating hooks")."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from bench.support.sim import init_manifest

from swiftdeploy.commands.context import gating_hooks
from swiftdeploy.durations import format_duration
from swiftdeploy.errors import BadInputError
from swiftdeploy.manifest import Hook, LoadedManifest
from swiftdeploy.notify.hooks import ANSWER_BYTES, HookCall, HookCaller, HookContext, hook_caller
from swiftdeploy.notify.http import verify_signature
from swiftdeploy.notify.secrets import resolve_secrets
from tests.support.hook_server import HookServer, hook_server

KEY = "test-signing-key"
ENV = {"HOOK_KEY": KEY, "HOOK_TOKEN": "s3cret-token"}
# a pre-rollout question: the canary is ready, before step 1 (index 0, not entered)
CONTEXT = HookContext(
    service="demo", rollout_id="r1", phase="progressing", canary_version="v2",
    stable_version="v1", step=0, steps=3, weight=0, entered=False,
)  # fmt: skip


@pytest.fixture
def server() -> Iterator[HookServer]:
    with hook_server() as running:
        yield running


def manifest_with(directory: Path, server: HookServer, **hook: object) -> LoadedManifest:
    declared = {"name": "smoke", "type": "pre-rollout", "url": server.url("/smoke"), **hook}
    return init_manifest(
        directory,
        **{
            "notifications.signing_key": {"env": "HOOK_KEY"},
            "notifications.backoff": "50ms",
            "hooks": [declared],
        },
    )


def caller(directory: Path, server: HookServer, **hook: object) -> tuple[HookCaller, Hook]:
    loaded = manifest_with(directory, server, **hook)
    made = hook_caller(loaded, resolve_secrets(loaded, ENV))
    assert made is not None
    return made, loaded.manifest.hooks[0]


def finished(hooks: HookCaller, timeout_s: float = 20.0) -> HookCall:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        calls = hooks.answers()
        if calls:
            return calls[0]
        time.sleep(0.01)
    raise AssertionError("the hook call did not finish")


def test_a_call_posts_the_signed_payload_and_keeps_the_json_answer(
    tmp_path: Path, server: HookServer
) -> None:
    # Given a receiver answering 200 with JSON, and a hook with a header from a secret
    server.answer("/smoke", 200, {"p99_ms": 42})
    hooks, hook = caller(
        tmp_path, server, headers={"Authorization": {"env": "HOOK_TOKEN"}},
        metadata={"suite": "smoke"},
    )  # fmt: skip
    # When it is called off the caller's thread
    assert hooks.start(hook, CONTEXT)
    call = finished(hooks)
    # Then the answer is ok, kept as JSON, in one attempt
    assert (call.result, call.status, call.attempts, call.answer) == ("ok", 200, 1, {"p99_ms": 42})
    (sent,) = server.calls_to("/smoke")
    # and the payload is Flagger-like, signed with the key, with its idempotency key
    assert sent.json == {
        "name": "smoke", "type": "pre-rollout", "service": "demo", "rollout_id": "r1",
        "phase": "progressing", "canary_version": "v2", "stable_version": "v1", "step": 0,
        "steps": 3, "weight": 0, "metadata": {"suite": "smoke"},
    }  # fmt: skip
    assert verify_signature(KEY.encode(), sent.raw, sent.headers)
    assert not verify_signature(b"another key", sent.raw, sent.headers)
    assert sent.headers["Idempotency-Key"] == "r1/smoke/0"
    assert sent.headers["X-SwiftDeploy-Event"] == "hook.pre-rollout"
    assert sent.headers["Authorization"] == "s3cret-token"
    # and the audit record's fields carry neither the URL nor the headers
    fields = call.record_fields()
    assert set(fields) == {
        "rollout_id", "step_index", "step", "steps", "asks", "hook", "type", "result",
        "status", "attempts", "elapsed_s", "error", "answer",
    }  # fmt: skip
    assert (fields["step_index"], fields["step"], fields["steps"]) == (0, 0, 3)
    assert "s3cret-token" not in repr(fields)
    assert str(server.port) not in repr(fields)


def test_a_5xx_is_retried_under_one_idempotency_key_then_refused(
    tmp_path: Path, server: HookServer
) -> None:
    server.answer("/smoke", 500, "database down")
    hooks, hook = caller(tmp_path, server, retries=2)
    hooks.start(hook, CONTEXT)
    call = finished(hooks)
    assert (call.result, call.status, call.attempts) == ("refused", 500, 3)
    assert call.summary() == "answered HTTP 500: database down"
    keys = {sent.headers["Idempotency-Key"] for sent in server.calls_to("/smoke")}
    assert keys == {"r1/smoke/0"}
    assert len(server.calls_to("/smoke")) == 3


def test_a_4xx_is_not_retried(tmp_path: Path, server: HookServer) -> None:
    server.answer("/smoke", 403, {"approved": False})
    hooks, hook = caller(tmp_path, server, retries=3)
    hooks.start(hook, CONTEXT)
    call = finished(hooks)
    assert (call.result, call.status, call.attempts) == ("refused", 403, 1)


def test_no_answer_in_time_is_a_failed_call(tmp_path: Path, server: HookServer) -> None:
    # Given a receiver slower than the hook's timeout
    server.answer("/smoke", 200, "", delay_s=2.0)
    hooks, hook = caller(tmp_path, server, timeout="200ms", retries=1)
    hooks.start(hook, CONTEXT)
    # Then a second call of the same hook is not started while one is in flight
    assert not hooks.start(hook, CONTEXT)
    call = finished(hooks)
    assert (call.result, call.status, call.attempts) == ("failed", None, 2)
    assert call.summary().startswith(f"did not answer: timed out after {format_duration(0.2)}")


def test_a_large_answer_is_bounded_and_a_secret_in_it_redacted(
    tmp_path: Path, server: HookServer
) -> None:
    server.answer("/smoke", 200, "echo s3cret-token " + "x" * 20_000)
    hooks, hook = caller(tmp_path, server, headers={"X-Token": {"env": "HOOK_TOKEN"}})
    hooks.start(hook, CONTEXT)
    call = finished(hooks)
    assert isinstance(call.answer, str)
    assert len(call.answer.encode()) <= ANSWER_BYTES
    assert call.answer.startswith("echo <secret> xxx")


def test_a_gate_asked_again_gets_a_new_idempotency_key_and_steps_count_from_1(
    tmp_path: Path, server: HookServer
) -> None:
    # Given a confirm-promotion gate after the last of 3 steps (index 2), asked a 3rd time
    hooks, hook = caller(tmp_path, server, type="confirm-promotion")
    hooks.start(hook, HookContext(**{**CONTEXT.__dict__, "step": 2, "entered": True, "asks": 3}))
    call = finished(hooks)
    # Then the payload, the key and the record say step 3 of 3, as events do
    (sent,) = server.calls_to("/smoke")
    assert (sent.json["step"], sent.json["steps"]) == (3, 3)
    assert sent.headers["Idempotency-Key"] == "r1/smoke/3/3"
    assert (call.record_fields()["step"], call.record_fields()["step_index"]) == (3, 2)


def test_a_missing_secret_is_one_clear_error_before_anything_starts(
    tmp_path: Path, server: HookServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("HOOK_KEY", raising=False)
    loaded = manifest_with(tmp_path, server)
    with pytest.raises(BadInputError) as raised:
        gating_hooks(loaded)
    assert "HOOK_KEY" in raised.value.one_line()
    assert server.calls == []


def test_no_hooks_no_caller(tmp_path: Path) -> None:
    assert gating_hooks(init_manifest(tmp_path)) is None
