"""The audit trail: one JSON record per line of `history.jsonl`, in a SHA-256 hash chain.

Every record carries `prev_hash` (the `hash` of the record before it; 64 zeros for the
first) and `hash`, the SHA-256 of the record's canonical JSON without `hash` (sorted
keys, separators `,` and `:`, UTF-8). Changing, removing, reordering or inserting a
record breaks the chain at that point, which `swiftdeploy audit verify` reports.

Appending is crash- and concurrency-safe:

* an exclusive `flock` on `history.jsonl.lock` (a separate file, so that it survives
  rotation) is held from reading the last hash to the end of the write, so writers in
  different processes never interleave and never fork the chain;
* the whole line goes out in ONE `os.write` on an `O_APPEND` descriptor, then `fsync`;
  a failed or short write is cut back off under the same lock and raised as AuditError,
  so the caller (who records BEFORE acting) does not act;
* a torn last line (a writer killed mid-write) is never dropped or repaired: the next
  append refuses with an AuditError that points to `swiftdeploy audit verify`.

At `max_bytes` the file is renamed to `history.jsonl.N` (N = 1, 2, ... in the order
written, oldest first) and a new file starts whose first record's `prev_hash` is the
hash of the previous file's last record, so the chain runs across all files.

Secret values are replaced by "***" anywhere in a record (values, nested keys,
substrings) before it is hashed or written: a secret never reaches the disk.
"""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import errno
import fcntl
import getpass
import hashlib
import json
import math
import os
import re
import socket
import sys
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, date, datetime
from pathlib import Path, PurePath
from typing import Any

from pydantic import BaseModel

from swiftdeploy.errors import AuditError
from swiftdeploy.fsutil import private_dir

GENESIS_HASH = "0" * 64
REDACTED = "***"
FILE_MODE = 0o600
KINDS = ("command", "transition", "decision", "chaos")
# Fields the log fills in itself; a caller cannot set them.
ENVELOPE = frozenset({"id", "seq", "ts", "actor", "kind", "prev_hash", "hash"})
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
TRANSITION_KEYS = ("phase_before", "phase_after")
VERIFY = "run `swiftdeploy audit verify` to see what is wrong"
NOT_RECORDED = "nothing was recorded and the action was not taken"

_KIND = re.compile(r"^[a-z][a-z0-9_-]{0,39}$")
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_CHUNK = 65536

Record = dict[str, Any]


# --- canonical form and hashing -------------------------------------------------------


def canonical_bytes(record: Mapping[str, Any]) -> bytes:
    """The canonical JSON of a record: sorted keys, no spaces, UTF-8, no NaN."""
    return json.dumps(
        record, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


def record_hash(record: Mapping[str, Any]) -> str:
    """SHA-256 (hex) of the record's canonical JSON without its `hash` field."""
    body = {key: value for key, value in record.items() if key != "hash"}
    return hashlib.sha256(canonical_bytes(body)).hexdigest()


def is_hash(value: object) -> bool:
    return isinstance(value, str) and bool(_HEX64.match(value))


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
    """The rotated files of a trail, oldest first, as (N, path)."""
    if not path.parent.is_dir():
        return []
    found = []
    for candidate in path.parent.iterdir():
        number = rotated_number(path, candidate)
        if number is not None and candidate.is_file():
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


GENESIS = ChainTail(hash=GENESIS_HASH, seq=0)


def read_tail(file: Path) -> ChainTail | None:
    """The last record of one file (None when the file is empty).

    Raises AuditError when the file ends in a torn line, or its last line is not a
    valid record: the chain cannot be continued without someone looking at it.
    """
    fd = os.open(file, os.O_RDONLY | os.O_CLOEXEC)
    try:
        size = os.fstat(fd).st_size
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
        problem = _tail_problem(raw)
        if problem:
            raise AuditError(
                f"the last record of the audit trail {file} (line "
                f"{_line_number(fd, start)}) {problem}; {VERIFY}",
                hint=NOT_RECORDED,
            )
        record = json.loads(raw)
        return ChainTail(hash=record["hash"], seq=record["seq"])
    finally:
        os.close(fd)


def _tail_problem(raw: bytes) -> str | None:
    try:
        record = json.loads(raw)
    except ValueError:
        return "is not valid JSON"
    if not isinstance(record, dict):
        return "is not a JSON object"
    if not is_hash(record.get("hash")) or not isinstance(record.get("seq"), int):
        return "has no valid hash or seq"
    if record_hash(record) != record["hash"]:
        return "does not match its hash: it was changed after it was written"
    return None


# --- the log ----------------------------------------------------------------------------


class AuditLog:
    """Appends hash-chained records to `path`; safe across threads and processes."""

    def __init__(
        self,
        path: Path,
        max_bytes: int,
        secrets: Sequence[str] = (),
        *,
        command: Sequence[str] | None = None,
        clock: Callable[[], datetime] | None = None,
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

    @property
    def lock_path(self) -> Path:
        return self.path.with_name(self.path.name + ".lock")

    def append(self, kind: str, **fields: Any) -> Record:
        """Record one event and return the record as written.

        `rollout_id` and `command` may be passed to override the defaults (None and
        this process's argv). Raises AuditError when the record could not be made
        durable; the caller must then not take the action.
        """
        body = self._body(kind, fields)
        with self._locked():
            tail, size = self._tail()
            # Stamped under the lock, so that the order of the file is the order of time.
            body["ts"] = utc_timestamp(self._clock())
            body["seq"] = tail.seq + 1
            body["prev_hash"] = tail.hash
            body["hash"] = record_hash(body)
            line = canonical_bytes(body) + b"\n"
            if size > 0 and size + len(line) > self.max_bytes:
                self._rotate(kind)
            self._write(line, kind)
        return body

    def head(self) -> str | None:
        """The hash of the last record (None for an empty trail): an anchor to keep."""
        if not self.path.parent.is_dir():
            return None
        with self._locked():
            tail, _ = self._tail()
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
        # (`ts`, `seq` and the hashes are added under the lock, after this.)
        return {key: self._redactor.plain(value) for key, value in envelope.items()}

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

    def _tail(self) -> tuple[ChainTail, int]:
        """(last record of the trail, size of the current file)."""
        try:
            size = self.path.stat().st_size
        except FileNotFoundError:
            size = 0
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
        rotated = rotated_files(self.path)
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

    def _write(self, line: bytes, kind: str) -> None:
        try:
            fd = os.open(
                self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, FILE_MODE
            )
        except OSError as exc:
            raise _cannot_record(kind, self.path, exc) from exc
        try:
            stat = os.fstat(fd)
            if stat.st_mode & 0o777 != FILE_MODE:
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
                    os.ftruncate(fd, stat.st_size)
                raise _cannot_record(kind, self.path, exc) from exc
        finally:
            os.close(fd)
        if stat.st_size == 0:
            with contextlib.suppress(OSError):
                _fsync_dir(self.path.parent)


def _cannot_record(kind: str, path: Path, exc: OSError) -> AuditError:
    return AuditError(
        f"cannot record {kind} in the audit trail {path}: {exc.strerror or exc}; "
        "the action was not taken",
        hint="free disk space or fix the permissions, then run the command again",
    )


@contextlib.contextmanager
def shared_lock(path: Path) -> Iterator[None]:
    """Hold off writers while reading the trail, so no half-written append is seen as
    torn. Read-only: without a lock file (no writer ever ran), there is nothing to wait for."""
    lock = path.with_name(path.name + ".lock")
    try:
        fd = os.open(lock, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        yield
        return
    try:
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
        missing = [key for key in DECISION_KEYS if key not in decision]
        if missing:
            raise ValueError(f"a decision record's decision needs {', '.join(missing)}")


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
