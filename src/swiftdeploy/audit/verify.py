"""Checks an audit trail's hash chain and names the first record that is wrong.

The walk goes through every file in chain order (`history.jsonl.1`, `.2`, ...,
`history.jsonl`) and checks, for each line: that it is a JSON record with the
envelope fields; that its `hash` matches its content (else: edited); that its
`prev_hash` is the previous record's `hash` (else: a record before it was deleted,
inserted, reordered or rewritten, told apart by where `prev_hash` does point); and
that `seq` goes up by one. A last line without a newline is a torn tail (an
interrupted append), reported apart from tampering.

What a chain cannot show by itself: records cut off the END of the trail, or the
last record rewritten with a recomputed hash. Keep the head hash somewhere else
(`swiftdeploy audit verify` prints it) and pass it back as `anchor`: verify then
checks that the trail still contains that exact record.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from swiftdeploy.audit.log import (
    FILE_MODE,
    GENESIS_HASH,
    Record,
    is_hash,
    record_hash,
    rotated_files,
    shared_lock,
)
from swiftdeploy.errors import BadInputError

_REQUIRED = (("id", str), ("ts", str), ("kind", str), ("seq", int))


@dataclass(frozen=True)
class Problem:
    """What is wrong, and where: `file:line`, the record's id, and why."""

    code: str  # torn_tail | invalid | edited | deleted | inserted | reordered | rewritten |
    #            sequence | missing_file | anchor_missing
    file: Path
    line: int | None
    record_id: str | None
    reason: str
    offset: int | None = None  # byte offset where the line starts (torn tails: where to cut)

    def describe(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else str(self.file)
        record = f" (record {self.record_id})" if self.record_id else ""
        return f"{where}{record}: {self.reason}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "file": str(self.file),
            "line": self.line,
            "id": self.record_id,
            "reason": self.reason,
            "offset": self.offset,
        }


@dataclass(frozen=True)
class VerifyResult:
    path: Path
    files: tuple[Path, ...]
    records: int  # records checked and found good, in order, before any problem
    head: str | None  # hash of the last good record
    first_bad: Problem | None = None
    torn_tail: Problem | None = None
    anchor: str | None = None
    anchor_problem: Problem | None = None
    anchor_line: str | None = None  # file:line of the anchored record
    records_after_anchor: int | None = None
    warnings: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return self.first_bad is None and self.torn_tail is None and self.anchor_problem is None

    @property
    def problems(self) -> list[Problem]:
        found = [self.first_bad, self.torn_tail, self.anchor_problem]
        return [problem for problem in found if problem is not None]

    def summary(self) -> str:
        """One line: what failed first, or what was verified."""
        if self.first_bad:
            return f"audit trail broken at {self.first_bad.describe()}"
        if self.torn_tail:
            return f"audit trail ends in a torn record: {self.torn_tail.describe()}"
        if self.anchor_problem:
            return f"audit trail does not contain the anchor: {self.anchor_problem.reason}"
        if not self.files:
            return f"no audit trail at {self.path} yet: nothing to verify"
        return f"audit trail ok: {self.records} records in {len(self.files)} file(s)"

    def lines(self) -> list[str]:
        """Everything a person needs, one fact per line."""
        out = [self.summary()]
        out += [f"also: {p.describe()}" for p in self.problems[1:]]
        if self.torn_tail and self.torn_tail.offset is not None:
            out.append(
                f"the torn bytes start at byte {self.torn_tail.offset} of {self.torn_tail.file}; "
                "keep a copy of the file, then cut them off with "
                f"`truncate -s {self.torn_tail.offset} {self.torn_tail.file}` to record again"
            )
        if self.anchor and self.anchor_line:
            after = self.records_after_anchor or 0
            tail = "it is the head" if after == 0 else f"{after} records follow it"
            out.append(f"anchor {self.anchor[:12]}... found at {self.anchor_line}; {tail}")
        verified = "verified" if self.first_bad is None else "verified before the break"
        out.append(f"{self.records} records {verified}; head {self.head or '(empty trail)'}")
        out += [f"warning: {warning}" for warning in self.warnings]
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "path": str(self.path),
            "files": [str(path) for path in self.files],
            "records": self.records,
            "head": self.head,
            "first_bad": self.first_bad.to_dict() if self.first_bad else None,
            "torn_tail": self.torn_tail.to_dict() if self.torn_tail else None,
            "anchor": self.anchor,
            "anchor_found": None if self.anchor is None else self.anchor_problem is None,
            "anchor_at": self.anchor_line,
            "records_after_anchor": self.records_after_anchor,
            "warnings": list(self.warnings),
            "summary": self.summary(),
        }


# --- reading lines ----------------------------------------------------------------------


@dataclass
class _Entry:
    file: Path
    line: int
    offset: int
    record: Record | None = None
    error: str | None = None
    torn: bool = False
    hash_ok: bool = False

    @property
    def id(self) -> str | None:
        value = self.record.get("id") if self.record else None
        return value if isinstance(value, str) else None

    @property
    def hash(self) -> str:
        return str(self.record["hash"]) if self.record else ""

    @property
    def prev_hash(self) -> str:
        return str(self.record["prev_hash"]) if self.record else ""

    @property
    def seq(self) -> int:
        return int(self.record["seq"]) if self.record else 0

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line}"


def _parse(raw: bytes) -> tuple[Record | None, str | None]:
    try:
        record = json.loads(raw)
    except ValueError as exc:
        return None, f"is not valid JSON ({exc})"
    if not isinstance(record, dict):
        return None, "is not a JSON object"
    for key in ("hash", "prev_hash"):
        if not is_hash(record.get(key)):
            return None, f"has no valid {key} (64 lowercase hex digits)"
    for key, kind in _REQUIRED:
        value = record.get(key)
        if not isinstance(value, kind) or isinstance(value, bool):
            return None, f"has no valid {key}"
    return record, None


def _entries(file: Path) -> Iterator[_Entry]:
    data = file.read_bytes()
    offset = 0
    number = 0
    while offset < len(data):
        number += 1
        end = data.find(b"\n", offset)
        if end < 0:
            yield _Entry(
                file,
                number,
                offset,
                error=f"is torn: {len(data) - offset} bytes without a newline",
                torn=True,
            )
            return
        raw = data[offset:end]
        record, error = _parse(raw)
        entry = _Entry(file, number, offset, record=record, error=error)
        if record is not None:
            entry.hash_ok = record_hash(record) == record["hash"]
        yield entry
        offset = end + 1


# --- the walk ---------------------------------------------------------------------------


@dataclass
class _Walk:
    path: Path
    keep: bool
    good: list[_Entry] = field(default_factory=list)
    records: list[Record] = field(default_factory=list)
    first_bad: Problem | None = None
    torn_tail: Problem | None = None

    def run(self) -> list[Path]:
        files = self._files()
        if self.first_bad is not None:
            return files
        entries = [entry for file in files for entry in _entries(file)]
        by_hash = {entry.hash: index for index, entry in enumerate(entries) if entry.record}
        for index, entry in enumerate(entries):
            if entry.torn and index == len(entries) - 1 and entry.file == files[-1]:
                self.torn_tail = _problem("torn_tail", entry, entry.error or "", entry.offset)
                return files
            problem = self._check(index, entry, entries, by_hash)
            if problem is not None:
                self.first_bad = problem
                return files
            self.good.append(entry)
            if self.keep and entry.record is not None:
                self.records.append(entry.record)
        return files

    def _files(self) -> list[Path]:
        rotated = rotated_files(self.path)
        for expected, (number, file) in enumerate(rotated, start=1):
            if number != expected:
                missing = self.path.with_name(f"{self.path.name}.{expected}")
                self.first_bad = Problem(
                    "missing_file",
                    missing,
                    None,
                    None,
                    f"is missing: the rotated files jump from {expected - 1} to {number} "
                    f"({file.name} exists), so the records it held are gone",
                )
                break
        files = [file for _, file in rotated]
        if self.path.is_file():
            files.append(self.path)
        return files

    def _check(
        self, index: int, entry: _Entry, entries: list[_Entry], by_hash: dict[str, int]
    ) -> Problem | None:
        if entry.record is None:
            return _problem("invalid", entry, f"is not a valid record: it {entry.error}")
        if not entry.hash_ok:
            return _problem(
                "edited",
                entry,
                "its content does not match its hash: it was changed after it was written",
            )
        previous = self.good[-1] if self.good else None
        expected = previous.hash if previous else GENESIS_HASH
        if entry.prev_hash != expected:
            return self._chain_break(index, entry, entries, by_hash)
        expected_seq = previous.seq + 1 if previous else 1
        if entry.seq != expected_seq:
            return _problem(
                "sequence", entry, f"has seq {entry.seq} where {expected_seq} was expected"
            )
        return None

    def _chain_break(
        self, index: int, entry: _Entry, entries: list[_Entry], by_hash: dict[str, int]
    ) -> Problem:
        """Say what most likely happened: the prev_hash tells where this record belongs."""
        previous = self.good[-1] if self.good else None
        before_previous = self.good[-2].hash if len(self.good) > 1 else GENESIS_HASH
        if previous is not None and entry.prev_hash == before_previous:
            return _problem(
                "inserted",
                previous,
                f"was inserted: the record after it ({entry.where}, {entry.id}) chains to the "
                "record before it, so this one was not in the original chain",
            )
        target = by_hash.get(entry.prev_hash)
        if target is not None and target > index:
            return _problem(
                "reordered",
                entry,
                "is out of order: its prev_hash points to a record that comes later "
                f"({entries[target].where}, {entries[target].id})",
            )
        if target is not None:
            return _problem(
                "reordered",
                entry,
                "is out of order or records before it were deleted: its prev_hash points "
                f"to an earlier record ({entries[target].where}, {entries[target].id}), "
                f"not to the one just before it ({previous.where if previous else 'none'})",
            )
        gap = entry.seq - (previous.seq if previous else 0) - 1
        if gap > 0:
            return _problem(
                "deleted",
                entry,
                f"follows a gap: {gap} record(s) before it are missing (seq jumps from "
                f"{previous.seq if previous else 0} to {entry.seq}) and its prev_hash matches "
                "no record",
            )
        if previous is not None and gap == 0:
            return _problem(
                "rewritten",
                previous,
                f"was rewritten: the record after it ({entry.where}, {entry.id}) chains to a "
                "different record that is no longer in the trail",
            )
        return _problem(
            "deleted",
            entry,
            "its prev_hash matches no record in the trail: the record it followed is gone",
        )


def _problem(code: str, entry: _Entry, reason: str, offset: int | None = None) -> Problem:
    return Problem(code, entry.file, entry.line, entry.id, reason, offset)


def _mode_warnings(files: list[Path]) -> tuple[str, ...]:
    warnings = []
    for file in files:
        try:
            mode = os.stat(file).st_mode & 0o777
        except FileNotFoundError:  # rotated away since the walk
            continue
        if mode & ~FILE_MODE:
            warnings.append(f"{file} has mode {mode:04o}; it should be {FILE_MODE:04o}")
    return tuple(warnings)


def _check_anchor(anchor: str) -> str:
    value = anchor.strip().lower()
    if not is_hash(value):
        raise BadInputError(
            f"--anchor {anchor!r} is not a record hash",
            hint="pass the 64 hex digits `swiftdeploy audit verify` printed as the head",
        )
    return value


def read_trail(path: Path, anchor: str | None = None) -> tuple[list[Record], VerifyResult]:
    """Verify the trail and return the records that are good (in order) with the result."""
    return _verify(path, anchor, keep=True)


def verify(path: Path, anchor: str | None = None) -> VerifyResult:
    """Check the whole chain (and the anchor, when given); never raises for tampering."""
    return _verify(path, anchor, keep=False)[1]


def _verify(path: Path, anchor: str | None, *, keep: bool) -> tuple[list[Record], VerifyResult]:
    checked_anchor = _check_anchor(anchor) if anchor is not None else None
    walk = _Walk(path, keep=keep)
    with shared_lock(path):
        files = walk.run()
    head = walk.good[-1].hash if walk.good else None
    anchor_problem: Problem | None = None
    anchor_line: str | None = None
    after: int | None = None
    if checked_anchor is not None:
        position = next((i for i, e in enumerate(walk.good) if e.hash == checked_anchor), None)
        if position is None:
            anchor_problem = Problem(
                "anchor_missing",
                path,
                None,
                None,
                f"no verified record has hash {checked_anchor}: records up to the anchor "
                "were removed or rewritten"
                + (" (or lie after the break)" if walk.first_bad else ""),
            )
        else:
            anchor_line = walk.good[position].where
            after = len(walk.good) - position - 1
    result = VerifyResult(
        path=path,
        files=tuple(files),
        records=len(walk.good),
        head=head,
        first_bad=walk.first_bad,
        torn_tail=walk.torn_tail,
        anchor=checked_anchor,
        anchor_problem=anchor_problem,
        anchor_line=anchor_line,
        records_after_anchor=after,
        warnings=_mode_warnings(files),
    )
    return walk.records, result
