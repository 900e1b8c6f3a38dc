"""The trail's head file, `history.jsonl.head`: how many records the trail holds and the
hash of the last one, MAC'd with the audit key (see `swiftdeploy.audit.keys`).

The hash chain shows a record changed, removed or inserted in the middle, but not
records cut off the end, a trail deleted and started afresh, or every record rewritten
with recomputed hashes: each of those leaves a valid chain. The head file catches
them, since only the key holder can write a head that matches the changed trail.

`AuditLog.append` rewrites it (atomically: a temporary file, fsync, rename) under the
trail's lock after every record, and `verify` compares the trail with it. It names
the record count and last hash of the whole chain, across rotated files. A crash
between a record and its head leaves the head one record behind; that record's own
MAC shows it is genuine, so it is a warning, and the next append catches up.
"""

from __future__ import annotations

import contextlib
import os
import re
import stat
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from swiftdeploy.audit.keys import RecordKey
from swiftdeploy.audit.records import canonical_bytes, is_canonical, is_hash, parse_json

HEAD_FORMAT = "swiftdeploy-audit-head/v1"
_MAX_HEAD_FILE = 4096
_KEY_ID = re.compile(r"^[0-9a-f]{16}\Z")


class HeadError(ValueError):
    """The head file exists but cannot be trusted; the message says why."""


@dataclass(frozen=True)
class Head:
    count: int  # records in the whole chain (the seq of the last one)
    hash: str  # the hash of the last record
    ts: str  # when it was written


def head_path(trail: Path) -> Path:
    """`history.jsonl.head` beside `history.jsonl` (a suffix that is not a rotation)."""
    return trail.with_name(trail.name + ".head")


def head_bytes(head: Head, key: RecordKey) -> bytes:
    """The head file's content: one line of canonical JSON, MAC'd."""
    body: dict[str, Any] = {
        "format": HEAD_FORMAT,
        "count": head.count,
        "hash": head.hash,
        "key_id": key.key_id,
        "ts": head.ts,
    }
    body["mac"] = key.head_mac(canonical_bytes(body))
    return canonical_bytes(body) + b"\n"


def write_head(trail: Path, head: Head, key: RecordKey) -> None:
    """Replace the head file atomically; raises OSError."""
    path = head_path(trail)
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")  # 0600
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(head_bytes(head, key))
            handle.flush()
            os.fsync(handle.fileno())
        # No fsync of the directory: a rename lost in a power cut leaves the head behind
        # the records, which the records' MACs vouch for. It can never get ahead of them.
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise


def read_head(trail: Path, key: RecordKey) -> Head | None:
    """The head the key vouches for; None when there is no head file.

    Raises HeadError when it is not a regular file, not a head, or its MAC does not match
    this key, and OSError when it cannot be read.
    """
    path = head_path(trail)
    # O_NONBLOCK: a FIFO in its place must not hang the reader before fstat refuses it.
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise HeadError(f"{path} is not a regular file")
        data = os.read(fd, _MAX_HEAD_FILE + 1)
    finally:
        os.close(fd)
    return _parse(path, data, key)


def _parse(path: Path, data: bytes, key: RecordKey) -> Head:
    if len(data) > _MAX_HEAD_FILE or not data.endswith(b"\n") or data.count(b"\n") != 1:
        raise HeadError(f"{path} is not a head file (one line of JSON)")
    raw = data[:-1]
    try:
        body = parse_json(raw)
    except ValueError as exc:
        raise HeadError(f"{path} is not a head file: it {exc}") from None
    if not isinstance(body, dict) or body.get("format") != HEAD_FORMAT:
        raise HeadError(f"{path} is not a head file ({HEAD_FORMAT})")
    count, last, key_id, ts, mac = (body.get(k) for k in ("count", "hash", "key_id", "ts", "mac"))
    if (
        not isinstance(count, int)
        or isinstance(count, bool)
        or count < 1
        or not is_hash(last)
        or not isinstance(key_id, str)
        or not _KEY_ID.match(key_id)
        or not isinstance(ts, str)
        or not isinstance(mac, str)
        or set(body) != {"format", "count", "hash", "key_id", "ts", "mac"}
        or not is_canonical(body, raw)
    ):
        raise HeadError(f"{path} is not a well-formed head file")
    if key_id != key.key_id:
        raise HeadError(
            f"{path} was sealed with another audit key (id {key_id}; this key's id is "
            f"{key.key_id}): verify as the user, with the key, that wrote the trail"
        )
    unsigned = {k: v for k, v in body.items() if k != "mac"}
    if not key.head_mac_ok(canonical_bytes(unsigned), mac):
        raise HeadError(
            f"{path} does not match its MAC: it was changed by someone without the audit key"
        )
    assert isinstance(last, str)  # is_hash checked it; mypy cannot see through it
    return Head(count=count, hash=last, ts=ts)
