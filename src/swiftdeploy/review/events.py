"""Events: the audit trail's state changes as CloudEvents 1.0 (structured-mode JSON).

The trail is the one ordered, persisted, tamper-evident record of a project, wherever a
rollout was driven from, so events are a projection of it: one event per record that
changes something a person or a tool waits for (docs/events.md lists them), in the
trail's order, each exactly once. A record is mapped by `event_of`, a pure function of
the record and what came before it in the same rollout; `read_events` walks a trail's
files in chain order, and with `follow` tails the live file across rotation.

Looks (the engine's `decision` records) are not events: there are hundreds per rollout.
A `held` event carries the numbers of the look that held, read through
`explain.decision_of` from the rollout's latest look (a looks record rebuilt into its
looks first: `looks.Expander`).
"""

from __future__ import annotations

import os
import re
import stat
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from importlib import resources
from pathlib import Path
from typing import Any

from swiftdeploy.audit.log import Record, rotated_files, trail_files
from swiftdeploy.audit.looks import Expander
from swiftdeploy.audit.records import GENESIS_HASH, parse_record, record_hash
from swiftdeploy.audit.vocabulary import LIVE_PHASES, ROLLBACK_PREFIX, Phase
from swiftdeploy.durations import parse_duration
from swiftdeploy.errors import AuditError, AuditTamperedError, BadInputError
from swiftdeploy.manifest import HOOK_TYPES
from swiftdeploy.review.explain import (
    DecisionView,
    answer_words,
    as_mapping,
    decision_of,
    number,
    parse_ts,
)

Event = dict[str, Any]

SPECVERSION = "1.0"
SCHEMA_FILE = "event.v1.schema.json"
# The published schema's $id (schemas/event.v1.schema.json), each event's dataschema.
SCHEMA_ID = "urn:swiftdeploy:schema:event.v1"
TYPE_PREFIX = "dev.swiftdeploy."
POLL_S = 0.25

# What a transition record's `event` names (or the fallback derives from its phases).
ROLLOUT_EVENTS = (
    "started",
    "step",
    "held",
    "passed",
    "paused",
    "resumed",
    "promoting",
    "promoted",
    "rolling-back",
    "rolled-back",
    "aborted",
    "weight",
    "canary",
)
GATE_EVENTS = ("refused", "forced")
DRIVER_EVENTS = ("started", "restarted", "exited")
REQUEST_VERBS = ("promote", "pause", "resume", "abort", "weight")
REQUEST_RESULTS = ("done", "refused", "failed")
HOOK_RESULTS = ("ok", "refused", "failed")
NOTIFICATION_EVENTS = ("dead-letter",)
DIMENSIONS = ("errors", "latency")


def event_type(area: str, name: str) -> str:
    """`dev.swiftdeploy.rollout.step.v1`: a new major shape of data is a new suffix."""
    return f"{TYPE_PREFIX}{area}.{name}.v1"


def all_types() -> list[str]:
    """Every type this version writes, as the schema lists them."""
    return [
        *(event_type("rollout", name) for name in ROLLOUT_EVENTS),
        *(event_type("gate", name) for name in GATE_EVENTS),
        *(event_type("driver", name) for name in DRIVER_EVENTS),
        *(event_type("request", verb) for verb in REQUEST_VERBS),
        *(event_type("hook", kind) for kind in HOOK_TYPES),
        *(event_type("notification", name) for name in NOTIFICATION_EVENTS),
    ]


# Each area and the names it has: what a sink's `events` patterns may name.
AREAS: dict[str, tuple[str, ...]] = {
    "rollout": ROLLOUT_EVENTS,
    "gate": GATE_EVENTS,
    "driver": DRIVER_EVENTS,
    "request": REQUEST_VERBS,
    "hook": HOOK_TYPES,
    "notification": NOTIFICATION_EVENTS,
}


def pattern_problem(pattern: str) -> str | None:
    """Why a sink's events pattern (`*`, `rollout.*`, `rollout.rolled-back`) names no
    event this version writes; None when it does."""
    if pattern == "*":
        return None
    area, _, name = pattern.partition(".")
    if area not in AREAS:
        return f"no event area {area!r} (known: {', '.join(AREAS)})"
    if name != "*" and name not in AREAS[area]:
        return f"no event {pattern!r} (the {area} events: {', '.join(AREAS[area])})"
    return None


def matches(pattern: str, kind: str) -> bool:
    """Whether an event type (`dev.swiftdeploy.rollout.held.v1`) is one a pattern picks."""
    if pattern == "*":
        return True
    area, _, name = kind.removeprefix(TYPE_PREFIX).rpartition(".")[0].partition(".")
    wanted_area, _, wanted = pattern.partition(".")
    return area == wanted_area and wanted in ("*", name)


def schema_text() -> str:
    """The published JSON Schema (draft 2020-12) of the envelope and each type's data."""
    return resources.files("swiftdeploy").joinpath("schemas", SCHEMA_FILE).read_text("utf-8")


# --- one record to one event ------------------------------------------------------------


def event_of(
    record: Record,
    service: str,
    *,
    previous: Record | None = None,
    look: Record | None = None,
    steps: int | None = None,
    version: str | None = None,
    asked: tuple[Record, Record] | None = None,
) -> Event | None:
    """The event of one trail record, or None when it is no event (a look, a command,
    a deploy, a hook's answer unchanged). `previous` is the same rollout's transition
    before this one, `look` its latest decision record, `steps` the manifest's step
    count when the record has none, `version` the rollout's canary version (a
    rolled-back record no longer has it), `asked` the first and the last answer of the
    same hook to the same question (rollout and step) before this one."""
    kind = record.get("kind")
    if kind == "transition":
        name = transition_event(record, previous)
        if name is None:
            return None
        data = _rollout_data(record, name, previous, look, steps, version)
        return _envelope(record, service, event_type("rollout", name), data)
    if kind == "decision":
        return _gate_event(record, service, steps)
    if kind == "driver":
        name = record.get("event")
        if name not in DRIVER_EVENTS:
            return None
        data = {
            "rollout_id": _text(record.get("rollout_id")),
            "pid": _int(record.get("pid")),
            "restarts": _int(record.get("restarts")),
            "outcome": _text(record.get("outcome")),
            "by": _by(record),
        }
        return _envelope(record, service, event_type("driver", str(name)), data)
    if kind == "request":
        return _request_event(record, service)
    if kind == "hook":
        return _hook_event(record, service, steps, version, asked)
    if kind == "notification" and record.get("event") in NOTIFICATION_EVENTS:
        data = {
            "rollout_id": _text(record.get("rollout_id")),
            "sink": _text(record.get("sink")),
            "event_id": _text(record.get("event_id")),
            "event_type": _text(record.get("event_type")),
            "attempts": _int(record.get("attempts")),
            "error": _text(record.get("error")),
        }
        return _envelope(record, service, event_type("notification", record["event"]), data)
    return None


def transition_event(record: Record, previous: Record | None = None) -> str | None:
    """The change a transition record names in `event`; without that field (trails
    written before it), derived from its phases. A field that names nothing known, or
    null, is no event: the writer said so."""
    if "event" in record:
        named = record["event"]
        return named if named in ROLLOUT_EVENTS else None
    return derive_event(record, previous)


def derive_event(record: Record, previous: Record | None = None) -> str | None:
    """The change a transition record without `event` made, from phase_before,
    phase_after, pause_kind and step_index (and, where those cannot tell, the reason the
    engine and the commands have always written); `previous` is the same rollout's
    transition before it. None for a change that is no event (a deploy)."""
    before, after = record.get("phase_before"), record.get("phase_after")
    reason = _text(record.get("reason")) or ""
    if after in (Phase.PROMOTING, Phase.PROMOTED, Phase.ROLLED_BACK):
        return str(after)
    if after == Phase.ROLLING_BACK:
        return "aborted" if reason.removeprefix(ROLLBACK_PREFIX).startswith("aborted") else after
    if after == Phase.PAUSED:
        return _pause_event(record.get("pause_kind"), reason)
    if after != Phase.PROGRESSING:
        return None  # idle: a deploy
    if before not in LIVE_PHASES:
        return "canary" if reason.endswith("started by hand") else "started"
    moved = previous is not None and previous.get("step_index") != record.get("step_index")
    if moved or reason.startswith(("step ", "promoted by hand")):
        return "step"
    if before == Phase.PAUSED:
        return "resumed"
    weight_moved = previous is not None and previous.get("canary_weight") != record.get(
        "canary_weight"
    )
    return "weight" if weight_moved or reason.startswith("canary weight") else None


def _pause_event(pause_kind: object, reason: str) -> str | None:
    if pause_kind is None:  # written before transitions said which pause
        if reason.startswith("held"):
            pause_kind = "held"
        elif reason.startswith("step passed"):
            pause_kind = "manual"
        else:
            pause_kind = "operator"
    return {"held": "held", "manual": "passed", "timed": "passed", "operator": "paused"}.get(
        str(pause_kind)
    )


def _rollout_data(
    record: Record,
    name: str,
    previous: Record | None,
    look: Record | None,
    steps: int | None,
    version: str | None,
) -> dict[str, Any]:
    index = _int(record.get("step_index"))
    canary = _text(record.get("canary_version"))
    if canary is None and name == "rolled-back":
        # the canary is gone from the state, but the event names the version rolled back
        canary = _text((previous or {}).get("canary_version")) or version
    data: dict[str, Any] = {
        "rollout_id": _text(record.get("rollout_id")),
        "phase": _text(record.get("phase_after")),
        "stable_version": _text(record.get("stable_version")),
        "canary_version": canary,
        "weight": _int(record.get("canary_weight")),
        "step": None if index is None else index + 1,
        "steps": _int(record.get("steps")) or steps,
        "reason": _reason(record, name, previous),
        "by": _by(record),
    }
    if name == "passed":
        data["pause"] = _text(record.get("pause_kind"))
    if name == "held":
        view = decision_of(look) if look is not None else None
        data["look"] = None if view is None else look_numbers(view)
    return data


def _reason(record: Record, name: str, previous: Record | None) -> str:
    reason = _text(record.get("reason")) or ""
    if name in ("rolling-back", "aborted"):
        return reason.removeprefix(ROLLBACK_PREFIX)
    if name == "rolled-back" and previous and previous.get("phase_after") == Phase.ROLLING_BACK:
        # "rolled back" says nothing: the cause is the rolling-back's.
        return (_text(previous.get("reason")) or reason).removeprefix(ROLLBACK_PREFIX)
    return reason


def look_numbers(view: DecisionView) -> dict[str, Any]:
    """What a look counted and what each dimension still needs: the numbers of a hold."""
    needs: dict[str, Any] = {}
    for dimension in DIMENSIONS:
        stat_ = as_mapping(view.statistics.get(dimension))
        passed = stat_.get("passed_by")
        needs[dimension] = {
            "passed_by": passed if isinstance(passed, str) else None,
            "remaining": _int(stat_.get("remaining")),
            "eta_s": _seconds(stat_.get("eta_s")),
        }
    etas = [n["eta_s"] for n in needs.values() if n["passed_by"] is None and n["eta_s"] is not None]
    return {
        "seq": _int(view.record.get("seq")),
        "elapsed_s": _seconds(view.elapsed_s),
        "canary_requests": _int(view.canary.requests),
        "stable_requests": _int(view.stable.requests),
        "needs": needs,
        # The dimension left longest decides when the step could pass.
        "eta_s": max(etas) if etas else None,
        "reasons": [reason.message for reason in view.reasons if reason.message],
    }


def _gate_event(record: Record, service: str, steps: int | None) -> Event | None:
    action = record.get("action")
    if not isinstance(action, str):
        return None
    if action == "refused":
        name = "refused"
    elif action.startswith("forced "):
        name = "forced"
    else:
        return None  # a look, or a gate that let the person go on
    view = decision_of(record)
    if view is None:
        return None
    forced = as_mapping(record.get("forced"))
    index = view.step_index
    why = "; ".join(reason.message for reason in view.reasons if reason.message)
    data: dict[str, Any] = {
        "rollout_id": _text(record.get("rollout_id")),
        "requested": _text(record.get("requested")) or action.removeprefix("forced "),
        "verdict": view.verdict,
        "step": None if index is None else index + 1,
        "steps": steps,
        "weight": _int(view.step_weight),
        "why": _text(forced.get("why")) or why,
        "reason": _text(forced.get("reason")),
        "by": _text(forced.get("by")) or _by(record),
    }
    return _envelope(record, service, event_type("gate", name), data)


def _request_event(record: Record, service: str) -> Event | None:
    verb = record.get("verb")
    if verb not in REQUEST_VERBS:
        return None
    result = record.get("result")
    index = _int(record.get("step_index"))
    data = {
        "rollout_id": _text(record.get("rollout_id")),
        "verb": verb,
        "step": None if index is None else index + 1,
        "result": result if result in REQUEST_RESULTS else None,
        "weight": _int(record.get("weight")),
        "reason": _text(record.get("reason")),
        "detail": _text(record.get("detail")),
        "by": _text(record.get("requested_by")) or _by(record),
    }
    return _envelope(record, service, event_type("request", str(verb)), data)


def _hook_event(
    record: Record,
    service: str,
    steps: int | None,
    version: str | None,
    asked: tuple[Record, Record] | None,
) -> Event | None:
    """A gating webhook's answer (notify/hooks.py writes one record per call): an event
    when the first answer to a question (this hook, this rollout, this step) arrives and
    when its result or status changes; a gate asked again every few seconds while it
    says no is in the trail, not said again to people."""
    kind = record.get("type")
    if kind not in HOOK_TYPES:
        return None
    result, status = record.get("result"), record.get("status")
    first, last = asked if asked is not None else (record, None)
    if last is not None and (last.get("result"), last.get("status")) == (result, status):
        return None
    step = _int(record.get("step"))
    if step is None:  # recorded before the record said its step: from the index
        index = _int(record.get("step_index"))
        step = 0 if kind == "pre-rollout" else None if index is None else index + 1
    data = {
        "rollout_id": _text(record.get("rollout_id")),
        "hook": _text(record.get("hook")),
        "result": result if result in HOOK_RESULTS else None,
        "status": status if isinstance(status, int) and not isinstance(status, bool) else None,
        "attempts": _int(record.get("attempts")),
        "error": _text(record.get("error")),
        "step": step,
        "steps": _int(record.get("steps")) or steps,
        "canary_version": version,
        "summary": answer_words(status, record.get("answer"), record.get("error")),
        "asks": _int(record.get("asks")),
        "waited_s": _waited(first, record),
    }
    return _envelope(record, service, event_type("hook", str(kind)), data)


def _waited(first: Record, record: Record) -> float | None:
    """From the first call of a question to this answer, in seconds."""
    began, now = parse_ts(first.get("ts")), parse_ts(record.get("ts"))
    if began is None or now is None:
        return None
    took = number(first.get("elapsed_s")) or 0.0  # the first call's own time
    return _seconds(max((now - began).total_seconds() + took, 0.0))


def _envelope(record: Record, service: str, kind: str, data: dict[str, Any]) -> Event:
    event: Event = {
        "specversion": SPECVERSION,
        "id": record["hash"],  # unique in the chain, and the same at every reading
        "source": f"swiftdeploy://{service}",
        "type": kind,
    }
    if data.get("rollout_id"):
        event["subject"] = data["rollout_id"]
    event |= {
        "time": record["ts"],
        "datacontenttype": "application/json",
        "dataschema": SCHEMA_ID,
        "seq": record["seq"],  # an extension attribute: where to resume (`--since SEQ`)
        "data": data,
    }
    return event


def _by(record: Record) -> str | None:
    named = _text(record.get("requested_by")) or _text(record.get("by"))
    return named or _text(as_mapping(record.get("actor")).get("user"))


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _int(value: object) -> int | None:
    x = number(value)
    return None if x is None else round(x)


def _seconds(value: object) -> float | None:
    x = number(value)
    return None if x is None else round(x, 3)


# --- where to start ---------------------------------------------------------------------

_SEQ = re.compile(r"^\s*\d+\s*$")


@dataclass(frozen=True)
class Since:
    """Events after record `seq`, or at or after `time` (UTC)."""

    seq: int | None = None
    time: datetime | None = None

    def admits(self, record: Record) -> bool:
        if self.seq is not None:
            return int(record["seq"]) > self.seq
        if self.time is not None:
            at = parse_ts(record.get("ts"))
            return at is not None and at >= self.time
        return True


def parse_since(text: str, now: datetime | None = None) -> Since:
    """`120` (after record 120, the `seq` of the last event seen), an ISO 8601 time
    (without a zone: this machine's local time), or a duration ago (`10m`, `2h`)."""
    if _SEQ.match(text):
        return Since(seq=int(text))
    ago = _duration_ago(text)
    if ago is not None:
        return Since(time=(now or datetime.now(UTC)) - ago)
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise BadInputError(
            f"--since {text!r} is neither a record number, an ISO 8601 time nor a duration",
            hint="e.g. --since 120, --since 2025-03-14T09:00:00Z or --since 10m",
        ) from None
    return Since(time=moment.astimezone(UTC))  # a naive time is taken as local


def _duration_ago(text: str) -> timedelta | None:
    """`10m`, `1m30s`: a duration with its unit (a bare number is a record number, and
    a time such as `2025-03-14` is no duration)."""
    if not any(c.isalpha() for c in text):
        return None
    try:
        return timedelta(seconds=parse_duration(text))
    except ValueError:
        return None


# --- reading a trail --------------------------------------------------------------------


@dataclass
class _Cursor:
    """Where a reader is in a trail: one open file, read to `consumed` (a line end)."""

    fd: int
    ino: tuple[int, int]
    name: str
    consumed: int = 0
    line: int = 0
    pending: bytes = b""


class TrailTail:
    """The complete records of a trail, file after file in chain order; asked again, the
    records appended since, across rotation (the renamed file is read to its end, then
    the next one). Each record's form, hash and place in the chain are checked (its MAC
    is `audit verify`'s), so a reader never shows a record out of order or twice."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._cursor: _Cursor | None = None
        self._last_seq = 0
        self._last_hash = GENESIS_HASH

    def close(self) -> None:
        if self._cursor is not None:
            os.close(self._cursor.fd)
            self._cursor = None

    def records(self) -> Iterator[Record]:
        """Every record written since the last call (all of them the first time)."""
        if self._cursor is None:
            files = trail_files(self.path)
            if not files:
                return
            self._open(files[0])
        while True:
            cursor = self._cursor
            assert cursor is not None
            # Whether it was rotated is asked BEFORE reading: a renamed file is never
            # written again, so what is read after is all of it.
            rotated = self._identity(self.path) != cursor.ino
            yield from self._read(cursor)
            if not rotated:
                return
            following = self._following(cursor)
            if following is None:
                return  # renamed, and its successor not created yet
            if cursor.pending:
                raise AuditTamperedError(
                    f"the audit trail file {cursor.name} ends in a torn record (line "
                    f"{cursor.line + 1}); run `swiftdeploy audit verify`"
                )
            self.close()
            self._open(following)

    def _open(self, file: Path) -> None:
        try:
            fd = os.open(file, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError as exc:
            raise AuditError(f"cannot read the audit trail {file}: {exc.strerror}") from exc
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            os.close(fd)
            raise AuditError(f"the audit trail {file} is not a regular file")
        self._cursor = _Cursor(fd, (info.st_dev, info.st_ino), str(file))

    @staticmethod
    def _identity(file: Path) -> tuple[int, int] | None:
        try:
            info = file.stat()
        except FileNotFoundError:
            return None
        return info.st_dev, info.st_ino

    def _following(self, cursor: _Cursor) -> Path | None:
        """The file after the cursor's in chain order (None: not there yet)."""
        files = [file for _, file in rotated_files(self.path)]
        identities = [self._identity(file) for file in files]
        if cursor.ino not in identities:
            raise AuditError(
                f"the audit trail file being read ({cursor.name}) was removed or replaced",
                hint="read the events again from the start",
            )
        after = identities.index(cursor.ino) + 1
        if after < len(files):
            return files[after]
        return self.path if self.path.is_file() else None

    def _read(self, cursor: _Cursor) -> Iterator[Record]:
        size = os.fstat(cursor.fd).st_size
        if size < cursor.consumed + len(cursor.pending):
            # A writer took back a record it could not make durable (log.py): what
            # was half-read of it is not a record; read on from the last whole line.
            cursor.pending = b""
        position = cursor.consumed + len(cursor.pending)
        while position < size:
            chunk = os.pread(cursor.fd, min(1 << 20, size - position), position)
            if not chunk:
                break
            position += len(chunk)
            data = cursor.pending + chunk
            lines = data.split(b"\n")
            cursor.pending = lines.pop()
            for raw in lines:
                cursor.line += 1
                cursor.consumed += len(raw) + 1
                yield self._checked(raw, cursor)

    def _checked(self, raw: bytes, cursor: _Cursor) -> Record:
        where = f"{cursor.name}:{cursor.line}"
        try:
            record = parse_record(raw)
        except ValueError as exc:
            problem = f"is not an audit record: it {exc}"
        else:
            if record_hash(record) != record["hash"]:
                problem = "does not match its hash: it was changed after it was written"
            elif record["seq"] != self._last_seq + 1 or record["prev_hash"] != self._last_hash:
                problem = f"does not follow record {self._last_seq} in the chain"
            else:
                self._last_seq, self._last_hash = record["seq"], record["hash"]
                return record
        raise AuditTamperedError(
            f"the audit trail record at {where} {problem}",
            hint="no event after it is shown; run `swiftdeploy audit verify`",
        )


@dataclass
class Projector:
    """Records to events in trail order, keeping what a record's event needs from
    before it: each rollout's last transition and its latest look."""

    service: str
    steps: int | None = None
    _transitions: dict[str, Record] = field(default_factory=dict)
    _looks: dict[str, Record] = field(default_factory=dict)
    _versions: dict[str, str] = field(default_factory=dict)  # each rollout's canary
    # each rollout's hooks: (step index, the first and the last answer at it)
    _asked: dict[tuple[str, object], tuple[object, Record, Record]] = field(default_factory=dict)
    _expander: Expander = field(default_factory=Expander)

    def feed(self, record: Record) -> Event | None:
        rollout = record.get("rollout_id")
        key = rollout if isinstance(rollout, str) else ""
        hook = (key, record.get("hook"))
        asked = self._asked.get(hook) if record.get("kind") == "hook" else None
        same = asked is not None and asked[0] == record.get("step_index")
        event = event_of(
            record,
            self.service,
            previous=self._transitions.get(key),
            look=self._looks.get(key),
            steps=self.steps,
            version=self._versions.get(key),
            asked=(asked[1], asked[2]) if asked is not None and same else None,
        )
        if record.get("kind") == "hook":
            first = asked[1] if asked is not None and same else record
            self._asked[hook] = (record.get("step_index"), first, record)
        if record.get("kind") == "transition":
            self._transitions[key] = record
            if isinstance(record.get("canary_version"), str):
                self._versions[key] = record["canary_version"]
        elif record.get("kind") == "decision":
            latest = self._expander(record)[-1]  # a looks record's last look
            if key:  # a look at a rollout's step
                self._looks[key] = latest
        return event


def read_events(
    path: Path,
    service: str,
    *,
    since: Since | None = None,
    rollout: str | None = None,
    steps: int | None = None,
    follow: bool = False,
    stop: Callable[[], bool] = lambda: False,
    poll_s: float = POLL_S,
    sleep: Callable[[float], None] = time.sleep,
) -> Iterator[Event]:
    """The events of the trail at `path` (with its rotated files), oldest first. With
    `follow`, then those appended later, polling every `poll_s`, until `stop()` is true
    (asked after every poll; a trail not there yet is waited for)."""
    projector = Projector(service, steps)
    tail = TrailTail(path)
    try:
        while True:
            for record in tail.records():
                event = projector.feed(record)
                if event is None or (since is not None and not since.admits(record)):
                    continue
                if rollout is not None and event.get("subject") != rollout:
                    continue
                yield event
            if not follow or stop():
                return
            sleep(poll_s)
    finally:
        tail.close()
