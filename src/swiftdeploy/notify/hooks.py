"""Gating webhooks (Flagger's model): a team's own checks take part in the rollout.

A hook call is one signed POST (notify/http.py) with its retries, run on a thread of its
own so that neither a slow receiver nor its retries delay a look or a rollback: the
engine starts calls and, at each tick, takes the answers that arrived (`answers`), records
each (one `hook` audit record) and keeps the latest per hook in the state. Nothing here
decides: the engine reads `HookCall.result` (docs/notifications.md, "Gating hooks").
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, Literal

import httpx

from swiftdeploy.manifest import Hook, HookType, LoadedManifest
from swiftdeploy.notify.http import Reply, post_signed
from swiftdeploy.notify.secrets import Secrets
from swiftdeploy.review.explain import answer_words

# A hook's answer kept in the trail, the state and the policy's input: bounded.
ANSWER_BYTES = 4096
BACKOFF_MAX_S = 30.0
GATES: tuple[HookType, ...] = ("pre-rollout", "confirm-traffic-increase", "confirm-promotion")
INFORMATIONAL: tuple[HookType, ...] = ("post-rollout", "rollback")
Result = Literal["ok", "refused", "failed"]


@dataclass(frozen=True)
class HookContext:
    """Where the rollout stands when a hook is called: the payload's facts."""

    service: str
    rollout_id: str
    phase: str
    canary_version: str | None
    stable_version: str | None
    step: int  # the step index the call is about
    steps: int
    weight: int
    asks: int = 1  # the how-many-th question at this step (a gate asks again)
    entered: bool = True  # False: before step 1 (pre-rollout, or a rollback before it)

    @property
    def number(self) -> int:
        """The step as payloads, events and messages count it: from 1, and 0 for
        "before step 1" (docs/notifications.md)."""
        return self.step + 1 if self.entered else 0


@dataclass(frozen=True)
class HookCall:
    """One call's outcome, its retries folded in (the `hook` audit record's fields)."""

    rollout_id: str
    hook: str
    type: HookType
    step: int  # the index, as the state keeps it
    number: int  # the step from 1, 0 before step 1 (HookContext.number)
    steps: int
    asks: int
    result: Result
    status: int | None
    attempts: int
    elapsed_s: float
    error: str | None
    answer: Any  # the body as JSON when it is JSON, else its text; bounded

    @property
    def ok(self) -> bool:
        return self.result == "ok"

    def record_fields(self) -> dict[str, Any]:
        return {
            "rollout_id": self.rollout_id,
            "step_index": self.step,
            "step": self.number,
            "steps": self.steps,
            "asks": self.asks,
            "hook": self.hook,
            "type": self.type,
            "result": self.result,
            "status": self.status,
            "attempts": self.attempts,
            "elapsed_s": round(self.elapsed_s, 3),
            "error": self.error,
            "answer": self.answer,
        }

    def summary(self) -> str:
        return describe_answer(self.status, self.answer, self.error)


def describe_answer(status: int | None, answer: Any, error: str | None) -> str:
    """`answered HTTP 500: <short body>` or `did not answer: timed out after 2s`."""
    return answer_words(status, answer, error)


def payload(hook: Hook, context: HookContext) -> dict[str, Any]:
    """What a hook receives (Flagger sends a similar one)."""
    return {
        "name": hook.name,
        "type": hook.type,
        "service": context.service,
        "rollout_id": context.rollout_id,
        "phase": context.phase,
        "canary_version": context.canary_version,
        "stable_version": context.stable_version,
        "step": context.number,
        "steps": context.steps,
        "weight": context.weight,
        "metadata": dict(hook.metadata),
    }


def idempotency_key(rollout_id: str, hook: str, step: int, asks: int = 1) -> str:
    """The same for every retry of one call (a receiver recognises a retry); a gate
    asked again at the same step is a new question, so it gets its own. `step` is the
    payload's (from 1, 0 before step 1)."""
    key = f"{rollout_id}/{hook}/{step}"
    return key if asks == 1 else f"{key}/{asks}"


def bounded_answer(reply: Reply) -> Any:
    """The body as JSON when it is JSON and small, else its text cut to the bound."""
    text = reply.body
    if len(text.encode("utf-8")) <= ANSWER_BYTES:
        parsed = reply.json()
        if parsed is not None:
            return parsed
    cut = text.encode("utf-8")[:ANSWER_BYTES].decode("utf-8", errors="ignore")
    return cut or None


class HookCaller:
    """The manifest's hooks, called off the engine's thread; at most one call per hook
    in flight. Thread-safe: calls finish on their threads, the engine takes them."""

    def __init__(
        self,
        hooks: list[Hook],
        secrets: Secrets,
        key: bytes,
        backoff_s: float,
        client: httpx.Client | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.hooks = list(hooks)
        self._secrets = secrets
        self._key = key
        self._backoff_s = backoff_s
        self._client = client or httpx.Client(trust_env=False)
        self._sleep = sleep
        self._lock = threading.Lock()
        self._running: dict[str, threading.Thread] = {}
        self._done: list[HookCall] = []

    def of_type(self, kind: HookType) -> list[Hook]:
        return [hook for hook in self.hooks if hook.type == kind]

    def in_flight(self, name: str) -> bool:
        """A call of this hook runs, or has finished and its answer is not taken yet
        (so a gate never asks again before it has heard the last answer)."""
        with self._lock:
            return name in self._running or any(call.hook == name for call in self._done)

    def start(self, hook: Hook, context: HookContext) -> bool:
        """Call `hook` on a thread of its own; False when a call of it is in flight."""
        with self._lock:
            if hook.name in self._running:
                return False
            thread = threading.Thread(
                target=self._run, args=(hook, context), name=f"hook-{hook.name}", daemon=True
            )
            self._running[hook.name] = thread
        thread.start()
        return True

    def answers(self) -> list[HookCall]:
        """The calls that finished since the last time, oldest first."""
        with self._lock:
            done, self._done = self._done, []
        return done

    def wait(self, kinds: tuple[HookType, ...] = INFORMATIONAL) -> None:
        """Wait for the calls of these types in flight, each at most as long as its
        timeouts, retries and backoffs can take."""
        with self._lock:
            running = [
                (thread, self._longest(hook))
                for hook in self.hooks
                if hook.type in kinds and (thread := self._running.get(hook.name)) is not None
            ]
        for thread, longest in running:
            thread.join(longest)

    def _longest(self, hook: Hook) -> float:
        backoffs = sum(self._backoff(attempt) for attempt in range(hook.retries))
        return hook.timeout * (hook.retries + 1) + backoffs + 1.0

    def _backoff(self, attempt: int) -> float:
        return float(min(self._backoff_s * 2**attempt, BACKOFF_MAX_S))

    def _run(self, hook: Hook, context: HookContext) -> None:
        try:
            call = self.call(hook, context)
        except Exception as exc:  # a bug must not lose the answer: the gate fails closed
            call = HookCall(
                context.rollout_id, hook.name, hook.type, context.step, context.number,
                context.steps, context.asks, "failed", None, 0, 0.0,
                f"the call failed: {type(exc).__name__}", None,
            )  # fmt: skip
        with self._lock:
            self._done.append(call)
            self._running.pop(hook.name, None)

    def call(self, hook: Hook, context: HookContext) -> HookCall:
        """One call with its retries (after no answer, 408, 429 or 5xx), on this thread."""
        body = json.dumps(payload(hook, context), separators=(",", ":")).encode()
        headers = {name: self._secrets.value(value) for name, value in hook.headers.items()}
        url = self._secrets.value(hook.url)
        key = idempotency_key(context.rollout_id, hook.name, context.number, context.asks)
        started = time.monotonic()
        attempts = 0
        while True:
            attempts += 1
            reply = post_signed(
                self._client, url, body, key=self._key, idempotency_key=key,
                event_type=f"hook.{hook.type}", headers=headers, timeout_s=hook.timeout,
            )  # fmt: skip
            if reply.ok or not reply.retryable or attempts > hook.retries:
                break
            self._sleep(self._backoff(attempts - 1))
        result: Result = "ok" if reply.ok else ("failed" if reply.status is None else "refused")
        # a receiver may echo what it got: no secret goes on to the trail or the state
        answer = bounded_answer(replace(reply, body=self._secrets.redact(reply.body)))
        error = None if reply.error is None else self._secrets.redact(reply.error)
        return HookCall(
            context.rollout_id, hook.name, hook.type, context.step, context.number,
            context.steps, context.asks, result, reply.status, attempts,
            time.monotonic() - started,
            error if attempts == 1 or error is None else f"{error} ({attempts} attempts)", answer,
        )  # fmt: skip


def hook_caller(loaded: LoadedManifest, secrets: Secrets) -> HookCaller | None:
    """The manifest's hooks, signed with its key; None when it declares none."""
    manifest = loaded.manifest
    if not manifest.hooks:
        return None
    signing = manifest.notifications.signing_key
    assert signing is not None  # the manifest requires it once a hook is declared
    return HookCaller(
        manifest.hooks,
        secrets,
        secrets.value(signing).encode("utf-8"),
        backoff_s=manifest.notifications.backoff,
    )
