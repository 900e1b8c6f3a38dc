"""The audit trail: one JSON record per line of `history.jsonl`, in a SHA-256 hash chain
whose records and head are MAC'd with a key kept outside the trail. Appending is
crash- and concurrency-safe (one locked, fsync'd write; a torn or mismatched trail is
refused); files rotate at `max_bytes` with the chain running across them; secrets are
masked before hashing. The design, and what `audit verify` can and cannot show, is in
docs/audit-trail.md.
"""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import errno
import fcntl
import getpass
import json
import math
import os
import re
import socket
import stat
import sys
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, date, datetime
from pathlib import Path, PurePath
from typing import Any, Protocol

from pydantic import BaseModel

from swiftdeploy.audit.head import Head, HeadError, head_path, read_head, write_head
from swiftdeploy.audit.keys import KeyStore, RecordKey
from swiftdeploy.audit.records import (
    GENESIS_HASH,
    MAX_DEPTH,
    canonical_bytes,
    nesting_depth,
    parse_record,
    record_hash,
)
from swiftdeploy.errors import AuditError
from swiftdeploy.fsutil import private_dir

REDACTED = "***"
FILE_MODE = 0o600
KINDS = ("command", "transition", "decision", "chaos")
ADOPT = "adopt"  # the record `swiftdeploy audit adopt` writes
# Fields the log fills in itself; a caller cannot set them.
ENVELOPE = frozenset({"id", "seq", "ts", "actor", "kind", "prev_hash", "hash", "mac"})
DECISION_KEYS = (
    "engine",
    "package",
    "decision_id",
    "input",
    "output",
    "measurements",
    "statistics",
    "thresholds",
    "step",
)
# A looks record's decision (swiftdeploy.audit.looks): looks relative to a full one.
LOOKS_KEYS = ("engine", "package", "looks")
TRANSITION_KEYS = ("phase_before", "phase_after")
VERIFY = "run `swiftdeploy audit verify` to see what is wrong"
NOT_RECORDED = "nothing was recorded and the action was not taken"

_KIND = re.compile(r"^[a-z][a-z0-9_-]{0,39}$")
_CHUNK = 65536

Record = dict[str, Any]


class TrailSink(Protocol):
    """Where each record goes once it is durable in the file (see the module docstring)."""

    def appended(self, record: Record) -> None: ...


# --- the files of a trail ---------------------------------------------------------------


def rotated_number(path: Path, candidate: Path) -> int | None:
    """N for `history.jsonl.N`, None for anything else."""
    prefix = path.name + "."
    if not candidate.name.startswith(prefix):
        return None
    suffix = candidate.name[len(prefix) :]
    if not suffix.isdigit() or suffix.startswith("0"):
        return None
    return int(suffix)


def rotated_files(path: Path) -> list[tuple[int, Path]]:
    """The rotated files of a trail, oldest first, as (N, path). Whatever has such a name
    is listed, a directory too: the reader says what is wrong with it. Raises OSError."""
    if not path.parent.is_dir():
        return []
    found = []
    for candidate in path.parent.iterdir():
        number = rotated_number(path, candidate)
        if number is not None:
            found.append((number, candidate))
    return sorted(found)


def trail_files(path: Path) -> list[Path]:
    """Every file of the trail in chain order: history.jsonl.1, .2, ..., history.jsonl."""
    files = [rotated for _, rotated in rotated_files(path)]
    if path.is_file():
        files.append(path)
    return files


# --- making a value safe to record ------------------------------------------------------


class _Redactor:
    def __init__(self, secrets: Sequence[str]) -> None:
        # Longest first, so a secret that contains another is replaced whole.
        self.secrets = sorted({s for s in secrets if s}, key=len, reverse=True)

    def text(self, value: str) -> str:
        # A lone surrogate cannot be encoded as UTF-8; it becomes U+FFFD.
        value = value.encode("utf-8", "replace").decode("utf-8")
        for secret in self.secrets:
            value = value.replace(secret, REDACTED)
        return value

    def number(self, value: float) -> float | str | None:
        if isinstance(value, float) and not math.isfinite(value):
            return None
        if any(secret in repr(value) for secret in self.secrets):
            return REDACTED
        return value

    def plain(self, value: object) -> Any:
        """A JSON value built from `value`, with every secret replaced."""
        if value is None or isinstance(value, bool):
            return value
        if isinstance(value, enum.Enum):
            return self.plain(value.value)
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, int | float):
            return self.number(value)
        if isinstance(value, BaseModel):
            return self.plain(value.model_dump(mode="json"))
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            return self.plain(dataclasses.asdict(value))
        if isinstance(value, Mapping):
            return {self.text(str(key)): self.plain(item) for key, item in value.items()}
        if isinstance(value, list | tuple):
            return [self.plain(item) for item in value]
        if isinstance(value, set | frozenset):
            return sorted((self.plain(item) for item in value), key=json.dumps)
        if isinstance(value, datetime | date):
            return self.text(value.isoformat())
        if isinstance(value, PurePath):
            return self.text(str(value))
        raise TypeError(f"cannot record a {type(value).__name__} in the audit trail")


# --- who and when -----------------------------------------------------------------------


def utc_timestamp(now: datetime | None = None) -> str:
    """RFC 3339 in UTC with milliseconds: 2024-05-01T12:00:00.123Z."""
    moment = (now or datetime.now(UTC)).astimezone(UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry and no LOGNAME/USER (containers)
        return str(os.getuid())


# --- reading the end of a file ----------------------------------------------------------


def _line_start(fd: int, end: int) -> int:
    """Offset just after the last newline before `end` (0 when there is none)."""
    pos = end
    while pos > 0:
        start = max(0, pos - _CHUNK)
        chunk = os.pread(fd, pos - start, start)
        index = chunk.rfind(b"\n")
        if index >= 0:
            return start + index + 1
        pos = start
    return 0


def _line_number(fd: int, offset: int) -> int:
    """1-based line number of the line that starts at `offset`."""
    count, pos = 0, 0
    while pos < offset:
        chunk = os.pread(fd, min(_CHUNK, offset - pos), pos)
        if not chunk:
            break
        count += chunk.count(b"\n")
        pos += len(chunk)
    return count + 1


@dataclasses.dataclass(frozen=True)
class ChainTail:
    """The last record of the trail: what the next record chains to."""

    hash: str
    seq: int
    mac: str | None = None  # None only for records written before records had MACs


GENESIS = ChainTail(hash=GENESIS_HASH, seq=0)


def read_tail(file: Path) -> ChainTail | None:
    """The last record of one file (None when the file is empty).

    Raises AuditError when the file ends in a torn line, or its last line is not a
    valid record: the chain cannot be continued without someone looking at it.
    Raises OSError when the file cannot be read.
    """
    # O_NONBLOCK: a FIFO in the trail's place must not hang us before fstat refuses it.
    fd = os.open(file, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise AuditError(f"the audit trail {file} is not a regular file; {VERIFY}")
        size = info.st_size
        if size == 0:
            return None
        if os.pread(fd, 1, size - 1) != b"\n":
            start = _line_start(fd, size)
            raise AuditError(
                f"the audit trail {file} ends in a torn record at line "
                f"{_line_number(fd, start)} (byte {start}; {size - start} bytes without a "
                f"newline): an append was interrupted; {VERIFY}",
                hint=NOT_RECORDED,
            )
        start = _line_start(fd, size - 1)
        raw = os.pread(fd, size - 1 - start, start)
        try:
            record = parse_record(raw)
        except ValueError as exc:
            problem: str | None = str(exc)
        else:
            problem = (
                None
                if record_hash(record) == record["hash"]
                else "does not match its hash: it was changed after it was written"
            )
        if problem:
            raise AuditError(
                f"the last record of the audit trail {file} (line "
                f"{_line_number(fd, start)}) {problem}; {VERIFY}",
                hint=NOT_RECORDED,
            )
        return ChainTail(hash=record["hash"], seq=record["seq"], mac=record.get("mac"))
    finally:
        os.close(fd)


def continuation_problem(
    tail: ChainTail, head: Head | None, key: RecordKey, head_file: Path
) -> str | None:
    """Why the trail, ending in `tail`, must not be continued with this key (or None).

    A head behind the tail is a crash between a record and its head; the tail's MAC
    then shows that the record is ours.
    """
    if tail.mac is not None and not key.record_mac_ok(tail.hash, tail.mac):
        return (
            f"ends in record {tail.seq}, whose MAC does not match the audit key: it was "
            "forged, or written with another key"
        )
    if head is None:
        if tail.seq == 0:
            return None
        return (
            f"has {tail.seq} records but no head file ({head_file}): records may have been "
            "cut from its end, or it was written before swiftdeploy kept one; if "
            "`swiftdeploy audit verify` finds nothing else, `swiftdeploy audit adopt` seals it"
        )
    if tail.seq == 0:
        return f"is gone, but its head file says it held {head.count} records: it was deleted"
    if tail.seq < head.count:
        return (
            f"ends at record {tail.seq}, but its head file says {head.count}: "
            f"{head.count - tail.seq} record(s) were cut from its end"
        )
    if tail.seq == head.count and tail.hash != head.hash:
        return f"ends in record {tail.seq}, but not the one its head file names: it was rewritten"
    if tail.seq > head.count and tail.mac is None:
        return f"ends in record {tail.seq}, after its head (record {head.count}), without a MAC"
    return None


# --- the log ----------------------------------------------------------------------------


class AuditLog:
    """Appends hash-chained, MAC'd records to `path`; safe across threads and processes."""

    def __init__(
        self,
        path: Path,
        max_bytes: int,
        secrets: Sequence[str] = (),
        *,
        command: Sequence[str] | None = None,
        clock: Callable[[], datetime] | None = None,
        keys: KeyStore | None = None,
        sink: TrailSink | None = None,
    ) -> None:
        if max_bytes <= 0:
            raise ValueError("max_bytes must be positive")
        self.path = path
        self.max_bytes = max_bytes
        self.command = list(sys.argv if command is None else command)
        self._clock = clock or (lambda: datetime.now(UTC))
        self._redactor = _Redactor(list(secrets))
        self._user = _user()
        self._host = socket.gethostname()
        self._keys = keys
        self._key: RecordKey | None = None
        self.sink = sink

    @property
    def lock_path(self) -> Path:
        return self.path.with_name(self.path.name + ".lock")

    @property
    def head_path(self) -> Path:
        return head_path(self.path)

    def append(self, kind: str, **fields: Any) -> Record:
        """Record one event and return the record as written.

        `rollout_id` and `command` may be passed to override the defaults (None and
        this process's argv). Raises AuditError when the record could not be made
        durable; the caller must then not take the action.
        """
        body = self._body(kind, fields)
        key = self._record_key()
        with self._locked():
            tail, size = self._last_record()
            problem = continuation_problem(tail, self._read_head(key), key, self.head_path)
            if problem:
                raise AuditError(
                    f"the audit trail {self.path} {problem}; {VERIFY}", hint=NOT_RECORDED
                )
            record = self._append_locked(body, tail, size, key)
        if self.sink is not None:
            self.sink.appended(record)
        return record

    def adopt(self, records: int, last_hash: str) -> Record:
        """Seal a trail that has no head file, found intact by `verify` up to record
        `records` with hash `last_hash`: append an `adopt` record saying so (its MAC
        vouches for the chain before it) and write the head."""
        body = self._body(ADOPT, {"adopted_records": records, "adopted_head": last_hash})
        key = self._record_key()
        with self._locked():
            if os.path.lexists(self.head_path):
                raise AuditError(
                    f"the audit trail {self.path} already has a head file ({self.head_path}); "
                    "adopt only seals a trail without one",
                    hint=f"if you trust the trail as it is, move {self.head_path} aside first",
                )
            tail, size = self._last_record()
            if (tail.seq, tail.hash) != (records, last_hash):
                raise AuditError(
                    f"the audit trail {self.path} changed while it was being adopted",
                    hint="run `swiftdeploy audit verify`, then adopt again",
                )
            return self._append_locked(body, tail, size, key)

    def now(self) -> datetime:
        """The time this log stamps records with."""
        return self._clock()

    def plain(self, value: object) -> Any:
        """`value` as a record holds it: JSON, with every secret replaced."""
        return self._redactor.plain(value)

    def head(self) -> str | None:
        """The hash of the last record (None for an empty trail): an anchor to keep."""
        if not self.path.parent.is_dir():
            return None
        with self._locked():
            tail, _ = self._last_record()
        return None if tail is GENESIS else tail.hash

    # -- building a record

    def _body(self, kind: str, fields: dict[str, Any]) -> Record:
        if not _KIND.match(kind):
            raise ValueError(f"audit kind {kind!r} must match {_KIND.pattern}")
        clash = ENVELOPE & fields.keys()
        if clash:
            raise ValueError(f"audit fields {sorted(clash)} are filled in by the log")
        _require_fields(kind, fields)
        envelope: Record = {
            "id": str(uuid.uuid4()),
            "actor": {"user": self._user, "host": self._host, "pid": os.getpid()},
            "command": self.command,
            "rollout_id": None,
            "kind": kind,
        }
        envelope.update(fields)
        # Top-level keys are the schema; everything else, keys included, is redacted.
        # (`ts`, `seq`, the hashes and the MAC are added under the lock, after this.)
        body = {key: self._redactor.plain(value) for key, value in envelope.items()}
        if nesting_depth(body) > MAX_DEPTH:
            # verify refuses deeper records, so the log must not write one.
            raise ValueError(f"audit fields nest more than {MAX_DEPTH} levels deep")
        return body

    def _append_locked(self, body: Record, tail: ChainTail, size: int, key: RecordKey) -> Record:
        kind = body["kind"]
        # Stamped under the lock, so that the order of the file is the order of time.
        body["ts"] = utc_timestamp(self._clock())
        body["seq"] = tail.seq + 1
        body["prev_hash"] = tail.hash
        body["hash"] = record_hash(body)
        body["mac"] = key.record_mac(body["hash"])
        line = canonical_bytes(body) + b"\n"
        if size > 0 and size + len(line) > self.max_bytes:
            self._rotate(kind)
        offset = self._write(line, kind)
        self._seal(Head(count=body["seq"], hash=body["hash"], ts=body["ts"]), key, kind, offset)
        return body

    # -- the key and the head

    def _record_key(self) -> RecordKey:
        # Read once per log: every append needs it, and it never changes under us.
        if self._key is None:
            self._key = (self._keys or KeyStore.from_environment()).record_key()
        return self._key

    def _read_head(self, key: RecordKey) -> Head | None:
        try:
            return read_head(self.path, key)
        except HeadError as exc:
            raise AuditError(f"{exc}; {VERIFY}", hint=NOT_RECORDED) from exc
        except OSError as exc:
            raise AuditError(
                f"cannot read the audit trail's head {self.head_path}: {exc.strerror}"
            ) from exc

    def _seal(self, head: Head, key: RecordKey, kind: str, offset: int) -> None:
        try:
            write_head(self.path, head, key)
        except OSError as exc:
            # Take our record back, so that the trail still ends where its head says and
            # nothing is recorded; were the cut to fail too, the record's MAC vouches for it.
            with contextlib.suppress(OSError):
                os.truncate(self.path, offset)
            raise AuditError(
                f"cannot record {kind}: writing the audit trail's head {self.head_path} "
                f"failed: {exc.strerror or exc}; the action was not taken",
                hint="free disk space or fix the permissions, then run the command again",
            ) from exc

    # -- the file

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        try:
            if not self.path.parent.is_dir():
                private_dir(self.path.parent)
            fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, FILE_MODE)
        except OSError as exc:
            raise AuditError(
                f"cannot open the audit trail lock {self.lock_path}: {exc.strerror}",
                hint="check that the directory exists and is writable",
            ) from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing the descriptor releases the lock

    def _last_record(self) -> tuple[ChainTail, int]:
        """(last record of the trail, size of the current file)."""
        try:
            info = self.path.stat()
        except FileNotFoundError:
            size = 0
        except OSError as exc:
            raise AuditError(f"cannot read the audit trail {self.path}: {exc.strerror}") from exc
        else:
            # A FIFO would block the write below; a directory cannot take it.
            if not stat.S_ISREG(info.st_mode):
                raise AuditError(f"the audit trail {self.path} is not a regular file; {VERIFY}")
            size = info.st_size
        try:
            tail = read_tail(self.path) if size else None
            if tail is None:
                # An empty or missing current file continues the newest rotated one.
                rotated = rotated_files(self.path)
                tail = read_tail(rotated[-1][1]) if rotated else None
        except OSError as exc:
            raise AuditError(f"cannot read the audit trail {self.path}: {exc.strerror}") from exc
        return tail or GENESIS, size

    def _rotate(self, kind: str) -> None:
        try:
            rotated = rotated_files(self.path)
        except OSError as exc:
            raise _cannot_record(kind, self.path.parent, exc) from exc
        number = rotated[-1][0] + 1 if rotated else 1
        target = self.path.with_name(f"{self.path.name}.{number}")
        try:
            os.rename(self.path, target)
            _fsync_dir(self.path.parent)
        except OSError as exc:
            raise AuditError(
                f"cannot record {kind}: rotating {self.path} to {target.name} failed: "
                f"{exc.strerror}; the action was not taken"
            ) from exc

    def _write(self, line: bytes, kind: str) -> int:
        """Append `line` durably; returns the offset it starts at."""
        try:
            fd = os.open(
                self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, FILE_MODE
            )
        except OSError as exc:
            raise _cannot_record(kind, self.path, exc) from exc
        try:
            info = os.fstat(fd)
            if info.st_mode & 0o777 != FILE_MODE:
                os.fchmod(fd, FILE_MODE)
            try:
                written = os.write(fd, line)
                if written != len(line):
                    raise OSError(errno.ENOSPC, f"short write ({written} of {len(line)} bytes)")
                os.fsync(fd)
            except OSError as exc:
                # Our own half-written or unsynced record: cut it off under the lock,
                # so the trail ends where it did and the chain stays valid.
                with contextlib.suppress(OSError):
                    os.ftruncate(fd, info.st_size)
                raise _cannot_record(kind, self.path, exc) from exc
        finally:
            os.close(fd)
        if info.st_size == 0:
            with contextlib.suppress(OSError):
                _fsync_dir(self.path.parent)
        return info.st_size


def _cannot_record(kind: str, path: Path, exc: OSError) -> AuditError:
    return AuditError(
        f"cannot record {kind} in the audit trail {path}: {exc.strerror or exc}; "
        "the action was not taken",
        hint="free disk space or fix the permissions, then run the command again",
    )


@contextlib.contextmanager
def shared_lock(path: Path) -> Iterator[None]:
    """Hold off writers while reading the trail, so no half-written append is seen as
    torn. Read-only: without a usable lock file (no writer ever ran, or something else
    sits in its place), there is nothing to wait for, and the reader says what it finds."""
    lock = path.with_name(path.name + ".lock")
    try:
        fd = os.open(lock, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        yield
        return
    try:
        with contextlib.suppress(OSError):
            fcntl.flock(fd, fcntl.LOCK_SH)
        yield
    finally:
        os.close(fd)


def _require_fields(kind: str, fields: Mapping[str, Any]) -> None:
    if kind == "transition":
        missing = [key for key in TRANSITION_KEYS if key not in fields]
        if missing:
            raise ValueError(f"a transition record needs {', '.join(missing)}")
    if kind == "decision":
        decision = fields.get("decision")
        if not isinstance(decision, Mapping):
            raise ValueError("a decision record needs decision={engine, package, ...}")
        needed = LOOKS_KEYS if "looks" in decision else DECISION_KEYS
        missing = [key for key in needed if key not in decision]
        if missing:
            raise ValueError(f"a decision record's decision needs {', '.join(missing)}")


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
