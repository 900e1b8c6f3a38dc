"""Delivery: one thread per sink reads the trail's events after the sink's cursor, in
trail order, and POSTs each (signed, Idempotency-Key = the event id) until it is
delivered or dead-lettered, then saves the cursor. Nothing in the engine waits on it:
a slow, failing or hanging receiver costs its own thread's time, bounded by the
timeout, and never a look or a rollback. Dead letters go to the driver thread
(`record_dead_letters`), which writes their audit records between looks."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from swiftdeploy.audit.log import Record
from swiftdeploy.audit.recorder import Recorder
from swiftdeploy.durations import format_duration
from swiftdeploy.errors import SwiftDeployError
from swiftdeploy.manifest import Manifest, Notifications, Sink
from swiftdeploy.notify.http import Reply, post_signed
from swiftdeploy.notify.messages import Context, body, name_of, report_link
from swiftdeploy.notify.outbox import DeadLetter, OutboxStore, trail_end
from swiftdeploy.notify.secrets import Secrets
from swiftdeploy.review.events import Event, Projector, TrailTail, matches
from swiftdeploy.review.why import why

BACKOFF_MAX_S = 300.0
POLL_S = 0.1  # how often an idle sink looks for new records (an fstat)
STOP_DRAIN_S = 2.0  # a driver told to stop delivers for at most this long more
DEAD_LETTER = "notification.dead-letter"
# The events whose message carries the rollout's `audit why` lines.
WHY_EVENTS = ("rollout.rolling-back", "rollout.rolled-back", "rollout.aborted",
              "rollout.promoted", "rollout.held", "gate.refused", "gate.forced")  # fmt: skip
ROLLOUTS_KEPT = 4  # the records of the latest few rollouts, for their why lines

Say = Callable[[str], None]


def backoff_s(settings: Notifications, attempt: int) -> float:
    """Before retry `attempt` (1, 2, ...): backoff, doubling, at most 5 minutes."""
    return float(min(settings.backoff * 2 ** (attempt - 1), BACKOFF_MAX_S))


def worst_case_s(settings: Notifications) -> float:
    """How long one event can take to be delivered or dead-lettered: every attempt
    timing out, and every backoff between them."""
    waits = sum(backoff_s(settings, n) for n in range(1, settings.retries + 1))
    return waits + (settings.retries + 1) * settings.timeout


def selected(sink: Sink, event: Event) -> bool:
    return any(matches(pattern, str(event["type"])) for pattern in sink.events)


@dataclass
class _Progress:
    """A sink's standing, as its thread last saw it."""

    read_to: int = 0  # the last record it has dealt with (delivered, dead or not its)
    idle_at: float = 0.0  # when it last found nothing more to do
    waiting_on: str | None = None  # the event it retries, for the drain's log line


class SinkWorker:
    """One sink's delivery thread."""

    def __init__(self, notifier: Notifier, sink: Sink) -> None:
        self.notifier = notifier
        self.sink = sink
        self.progress = _Progress()
        self.thread = threading.Thread(target=self._run, name=f"notify-{sink.name}", daemon=True)
        self._records: dict[str, list[Record]] = {}  # per rollout, for why lines

    def _run(self) -> None:
        n = self.notifier
        tail = TrailTail(n.trail)
        projector = Projector(n.manifest.service.name, len(n.manifest.strategy.canary.steps))
        try:
            while not n.stopped.is_set():
                began = time.monotonic()
                for record in tail.records():
                    event = projector.feed(record)
                    self._keep(record)
                    if event is not None and not self._send(record, event):
                        return  # stopped while retrying: the next driver goes on
                    self.progress.read_to = record["seq"]
                    if n.stopped.is_set():
                        return
                # a pass that began at `began` found nothing more (the drain waits for one)
                self.progress.idle_at = began
                n.stopped.wait(POLL_S)
        except SwiftDeployError as exc:
            # a trail that cannot be read (tampered, removed): delivery stops here and
            # says so once; the driver and the rollout go on
            n.say(f"notifications to {self.sink.name} stopped: {n.secrets.redact(exc.one_line())}")
        finally:
            tail.close()

    def _send(self, record: Record, event: Event) -> bool:
        """The event delivered or dead-lettered if it is this sink's and after its
        cursor (True), or stopped while retrying (False)."""
        cursor = self.notifier.outbox.cursor(self.sink.name)
        if record["seq"] <= cursor.seq or not selected(self.sink, event):
            return True
        return self._deliver(event, cursor.attempts)

    def _keep(self, record: Record) -> None:
        rollout = record.get("rollout_id")
        if not isinstance(rollout, str) or not rollout:
            return
        if rollout not in self._records and len(self._records) >= ROLLOUTS_KEPT:
            del self._records[next(iter(self._records))]  # the oldest rollout
        self._records.setdefault(rollout, []).append(record)

    def _why(self, event: Event) -> list[str]:
        rollout = event.get("subject")
        if self.sink.kind == "webhook" or name_of(event) not in WHY_EVENTS or not rollout:
            return []
        try:
            return why(self._records.get(str(rollout), []), str(rollout))
        except (SwiftDeployError, KeyError, ValueError, TypeError):
            return []  # the event's own reason is said instead

    def _deliver(self, event: Event, attempts: int) -> bool:
        """Until delivered or dead-lettered (True), or stopped (False)."""
        n = self.notifier
        service = n.manifest.service.name
        settings = n.manifest.notifications
        context = Context(service, report_link(settings.report_url, service, event.get("subject")),
                          self._why(event))  # fmt: skip
        payload = body(self.sink.kind, event, context)
        url = n.secrets.value(self.sink.url)
        headers = {name: n.secrets.value(value) for name, value in self.sink.headers.items()}
        self.progress.waiting_on = f"{name_of(event)} (record {event['seq']})"
        while True:
            reply = post_signed(n.client, url, payload, key=n.key, idempotency_key=event["id"],
                                event_type=str(event["type"]), headers=headers,
                                timeout_s=settings.timeout)  # fmt: skip
            attempts += 1
            if reply.ok:
                n.outbox.delivered(self.sink.name, event["seq"])
                n.delivered(self.sink.name, event, reply)
                self.progress.waiting_on = None
                return True
            if not reply.retryable or attempts > settings.retries:
                self._dead(event, attempts, reply)
                self.progress.waiting_on = None
                return True
            n.outbox.attempted(self.sink.name, attempts)
            if n.stopped.wait(backoff_s(settings, attempts)):
                return False

    def _dead(self, event: Event, attempts: int, reply: Reply) -> None:
        n = self.notifier
        data: dict[str, Any] = event.get("data") or {}
        letter = DeadLetter(
            seq=event["seq"],
            event_id=event["id"],
            event_type=str(event["type"]),
            rollout_id=data.get("rollout_id"),
            attempts=attempts,
            error=n.secrets.redact(reply.summary()),
            at=time.time(),
            # a dead letter's own event that cannot be delivered is not recorded again
            recorded=name_of(event) == DEAD_LETTER,
        )
        n.outbox.dead_lettered(self.sink.name, letter)
        n.say(f"notifications: {letter.event_type} (record {letter.seq}) to {self.sink.name}"
              f" dead-lettered after {attempts} attempt(s): {letter.error}")  # fmt: skip


class Notifier:
    """The sinks' delivery threads for one driver's life: `start`, `record_dead_letters`
    between looks, `drain` before a driver that ends exits, `stop`."""

    def __init__(
        self,
        manifest: Manifest,
        trail: Path,
        outbox: OutboxStore,
        secrets: Secrets,
        say: Say,
        on_delivered: Callable[[str, Event, Reply], None] | None = None,
    ) -> None:
        self.manifest = manifest
        self.trail = trail
        self.outbox = outbox
        self.secrets = secrets
        self.say = say
        self.on_delivered = on_delivered
        self.workers = [SinkWorker(self, sink) for sink in manifest.notifications.sinks]
        signing = manifest.notifications.signing_key
        # the manifest requires a signing key once a sink exists
        self.key = secrets.value(signing).encode() if signing and self.workers else b""
        self.stopped = threading.Event()
        self.client = httpx.Client(follow_redirects=False)

    @property
    def active(self) -> bool:
        return bool(self.workers)

    def start(self) -> None:
        """Each new sink's cursor at the trail's end (saved), then the threads."""
        if not self.workers:
            return
        end = trail_end(self.trail)
        new = self.outbox.start([w.sink.name for w in self.workers], end)
        if new:
            self.say(f"notifications: {', '.join(new)} start(s) at record {end} of the trail")
        for worker in self.workers:
            worker.thread.start()

    def delivered(self, sink: str, event: Event, reply: Reply) -> None:
        if self.on_delivered is not None:
            self.on_delivered(sink, event, reply)

    def record_dead_letters(self, recorder: Recorder) -> int:
        """The driver thread writes each new dead letter's audit record (the delivery
        threads never write to the trail); how many it wrote."""
        written = 0
        for sink, letter in self.outbox.unrecorded():
            recorder.record(
                "notification",
                event="dead-letter",
                rollout_id=letter.rollout_id,
                sink=sink,
                event_id=letter.event_id,
                event_type=letter.event_type,
                attempts=letter.attempts,
                error=letter.error,
            )
            self.outbox.mark_recorded(sink, letter.event_id)
            written += 1
        return written

    def caught_up(self, since: float) -> bool:
        """Every sink found nothing more to do after `since` (monotonic)."""
        return all(w.progress.idle_at > since or not w.thread.is_alive() for w in self.workers)

    def drain(
        self,
        recorder: Recorder | None,
        limit_s: float | None = None,
        stopping: Callable[[], bool] = lambda: False,
    ) -> bool:
        """Until every sink has delivered or dead-lettered what the trail holds now, at
        most the retries' worst case (`limit_s` if given), or `STOP_DRAIN_S` once
        `stopping()` (SIGTERM: a new rollout's driver replaces this one); True when
        caught up. What is left is delivered at the next driver's start."""
        if not self.workers:
            return True
        started = time.monotonic()
        limit = worst_case_s(self.manifest.notifications) if limit_s is None else limit_s
        said = False
        written_at = started
        while not self.caught_up(written_at):
            # a dead letter's record is an event too: wait for a pass begun after it
            if recorder is not None and self.record_dead_letters(recorder):
                written_at = time.monotonic()
            waited = time.monotonic() - started
            if stopping():
                limit = min(limit, waited + STOP_DRAIN_S)
            if waited > limit:
                self.say(f"notifications: left undelivered after {format_duration(waited)}: "
                         f"{self._waiting()}; the next driver delivers them")  # fmt: skip
                return False
            if not said and waited > 0.5:
                self.say(f"notifications: delivering before exiting"
                         f" (at most {format_duration(limit)}): {self._waiting()}")  # fmt: skip
                said = True
            time.sleep(0.05)
        return True

    def _waiting(self) -> str:
        waiting = [
            f"{w.sink.name}: {w.progress.waiting_on or 'reading the trail'}"
            for w in self.workers
            if w.thread.is_alive()
        ]
        return "; ".join(waiting) or "nothing"

    def stop(self) -> None:
        """The threads end (a POST in flight ends within its timeout); the cursors are
        saved as they went."""
        self.stopped.set()
        for worker in self.workers:
            if worker.thread.is_alive():
                worker.thread.join(self.manifest.notifications.timeout + 1.0)
        self.client.close()
