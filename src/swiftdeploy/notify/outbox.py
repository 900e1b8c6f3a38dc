"""The outbox: how far each sink has got through the trail's events, persisted.

The audit trail is the durable log of events (the driver writes a record before it
acts; an event exists exactly when its record does), so the outbox holds only cursors:
per sink, the `seq` of the last record whose event was delivered or dead-lettered, the
attempts spent on the one in flight, and the dead letters (a bounded list). After a
kill -9 the next driver reads on after the cursor: an event recorded and never sent is
sent then; one sent whose cursor was not yet saved is sent again with the same
Idempotency-Key (the event id), which receivers dedupe by.

Why not in State: the outbox is written by the delivery threads, at their own pace,
while the engine saves the state between looks; one object written by both would race
(a state save would undo a cursor, or the reverse). It lives apart: a 0600 file in the
state directory, or on Kubernetes the ConfigMap `<svc>-swiftdeploy-outbox`, so a new
driver pod goes on where the last one stopped."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Protocol

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from swiftdeploy.audit.log import read_tail, trail_files
from swiftdeploy.errors import StateError
from swiftdeploy.fsutil import atomic_write

FILE = "outbox.json"
DEAD_LETTERS_KEPT = 50  # per sink, the newest


class DeadLetter(BaseModel):
    model_config = ConfigDict(extra="ignore")

    seq: int
    event_id: str
    event_type: str
    rollout_id: str | None
    attempts: int
    error: str
    at: float
    # whether the driver has written its notification/dead-letter audit record (a dead
    # letter of a dead-letter event never gets one: no loop)
    recorded: bool = False


class SinkCursor(BaseModel):
    model_config = ConfigDict(extra="ignore")

    seq: int  # the last record delivered or dead-lettered (or the trail's end at start)
    attempts: int = 0  # spent on the event after it, in flight
    delivered: int = 0
    dead: list[DeadLetter] = Field(default_factory=list)


class Outbox(BaseModel):
    model_config = ConfigDict(extra="ignore")

    version: int = 1
    sinks: dict[str, SinkCursor] = Field(default_factory=dict)


class TextStore(Protocol):
    """Where the outbox's JSON is kept: a file, or a ConfigMap (runtime/kubernetes)."""

    def read(self) -> str | None: ...

    def write(self, text: str) -> None: ...


class FileText:
    """The outbox on one host: a 0600 file in the state directory, written atomically."""

    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / FILE

    def read(self) -> str | None:
        try:
            return self.path.read_text("utf-8")
        except FileNotFoundError:
            return None

    def write(self, text: str) -> None:
        atomic_write(self.path, text, 0o600)


class NoText:
    """No sink, nothing to keep (and no file written)."""

    def read(self) -> str | None:
        return None

    def write(self, text: str) -> None:
        return None


def trail_end(trail: Path) -> int:
    """The seq of the trail's last record (0: none yet)."""
    for file in reversed(trail_files(trail)):
        tail = read_tail(file)
        if tail is not None:
            return tail.seq
    return 0


class OutboxStore:
    """The outbox in memory and in its store; every change is saved whole, under one lock
    (the sinks' delivery threads and the driver thread share it)."""

    def __init__(self, text: TextStore) -> None:
        self.text = text
        self.lock = threading.Lock()
        self.outbox = load(text)

    def start(self, sinks: list[str], end: int) -> list[str]:
        """A sink with no cursor (the first start, or a sink added since) starts at the
        trail's end `end`: it gets what happens from now on, not a flood of history.
        Saved at once, before the driver records anything. The new sinks' names."""
        with self.lock:
            new = [name for name in sinks if name not in self.outbox.sinks]
            for name in new:
                self.outbox.sinks[name] = SinkCursor(seq=end)
            if new:
                self._save()
            return new

    def cursor(self, sink: str) -> SinkCursor:
        with self.lock:
            return self.outbox.sinks[sink].model_copy(deep=True)

    def attempted(self, sink: str, attempts: int) -> None:
        with self.lock:
            self.outbox.sinks[sink].attempts = attempts
            self._save()

    def delivered(self, sink: str, seq: int) -> None:
        with self.lock:
            cursor = self.outbox.sinks[sink]
            cursor.seq, cursor.attempts = seq, 0
            cursor.delivered += 1
            self._save()

    def dead_lettered(self, sink: str, letter: DeadLetter) -> None:
        with self.lock:
            cursor = self.outbox.sinks[sink]
            cursor.seq, cursor.attempts = letter.seq, 0
            cursor.dead = [*cursor.dead, letter][-DEAD_LETTERS_KEPT:]
            self._save()

    def unrecorded(self) -> list[tuple[str, DeadLetter]]:
        """Dead letters whose audit record the driver has not written yet."""
        with self.lock:
            return [
                (name, letter.model_copy())
                for name, cursor in self.outbox.sinks.items()
                for letter in cursor.dead
                if not letter.recorded
            ]

    def mark_recorded(self, sink: str, event_id: str) -> None:
        with self.lock:
            for letter in self.outbox.sinks[sink].dead:
                if letter.event_id == event_id:
                    letter.recorded = True
            self._save()

    def _save(self) -> None:
        self.text.write(self.outbox.model_dump_json(indent=1))


def load(text: TextStore) -> Outbox:
    """The persisted outbox (empty when there is none yet)."""
    raw = text.read()
    if not raw:
        return Outbox()
    try:
        return Outbox.model_validate_json(raw)
    except ValidationError as exc:
        raise StateError(
            f"the notifications outbox is corrupt ({str(exc).splitlines()[0]})",
            hint="remove it: each sink then starts again at the trail's end",
        ) from None


class Standing(BaseModel):
    """A sink as `status` shows it: how far it got, what waits, what was set aside."""

    name: str
    kind: str
    delivered_to: int  # the cursor: the last record delivered or dead-lettered
    delivered: int
    pending: int  # its events in the trail after the cursor
    attempts: int  # spent on the first of them
    dead_letters: list[DeadLetter]


def standings(
    sinks: list[tuple[str, str]], outbox: Outbox, pending: dict[str, int]
) -> list[Standing]:
    """(name, kind) of each sink in the manifest, with its cursor (none yet: nothing
    delivered, nothing pending) and its count of pending events."""
    out = []
    for name, kind in sinks:
        cursor = outbox.sinks.get(name)
        out.append(
            Standing(
                name=name,
                kind=kind,
                delivered_to=cursor.seq if cursor else 0,
                delivered=cursor.delivered if cursor else 0,
                pending=pending.get(name, 0),
                attempts=cursor.attempts if cursor else 0,
                dead_letters=list(cursor.dead) if cursor else [],
            )
        )
    return out
