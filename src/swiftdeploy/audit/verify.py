"""Checks an audit trail and its head, and names the first thing that is wrong.

The walk goes through every file in chain order (`history.jsonl.1`, `.2`, ...,
`history.jsonl`) and checks, for each line: that it is a record in canonical form
(strict JSON with the envelope fields, and exactly the bytes the log writes for it, so
a duplicate key or another spelling cannot hide a second meaning); that its `hash`
matches its content (else: edited); that its `mac` matches with the audit key (else:
forged, i.e. written or rewritten with a recomputed hash by someone without the key);
that its `prev_hash` is the previous record's `hash` (else: a record before it was
deleted, inserted, reordered or rewritten, told apart by where `prev_hash` does point);
and that `seq` goes up by one. A looks record (`swiftdeploy.audit.looks`) must name, by
`seq` and `hash`, a full hold record before it, and each of its looks fit it. A last line without a
newline is a torn tail (an interrupted append), reported apart from tampering.

Then the head file (`swiftdeploy.audit.head`): its MAC must hold, and the trail must
hold the record it names at the position it names. Fewer records means records were
cut off the end (a torn line where the head counts a complete record included); no
trail at all, that it was deleted; another record there, that the trail was rewritten.
Records after the head are what a crash between a record and its head leaves; their
own MACs vouch for them, so that is a warning. A trail with records and no head file
is a problem too, since without one a cut cannot be seen (a trail written before head
files existed is sealed with `swiftdeploy audit adopt`).

Two checks against something kept elsewhere, for what the trail and the key alone
cannot show (a trail rolled back, or deleted, together with its head; anything done
with the key): `anchor`, a record hash, and `checkpoint`, a signed head
(`swiftdeploy.audit.checkpoint`). The trail must still contain that record.

Without the audit key (another user or machine) the MACs and the head cannot be
checked: that is a problem (no_key), and the chain, anchor and checkpoint are still
checked and reported.

Whatever the files hold (binary, invalid UTF-8, NUL bytes, huge numbers, deep nesting,
a directory or a FIFO where a file should be, no permission to read), verify returns a
result with a Problem that says so; it raises BadInputError only for a malformed
`anchor` argument.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from swiftdeploy.audit import checkpoint as checkpoints
from swiftdeploy.audit import looks
from swiftdeploy.audit.checkpoint import Checkpoint
from swiftdeploy.audit.head import Head, HeadError, head_path, read_head
from swiftdeploy.audit.keys import KeyStore, RecordKey
from swiftdeploy.audit.log import FILE_MODE, Record, rotated_files, shared_lock
from swiftdeploy.audit.records import GENESIS_HASH, is_hash, parse_record, record_hash
from swiftdeploy.errors import AuditError, BadInputError

# A headline for each problem with the trail as a whole, for the summary.
_SEAL_HEADLINES = {
    "cut": "records were cut from the end of the audit trail",
    "deleted": "the audit trail was deleted",
    "head_mismatch": "the audit trail was rewritten",
    "head_missing": "the audit trail has no head file",
    "head_invalid": "the audit trail's head file cannot be trusted",
    "no_key": "the audit trail cannot be checked without its key",
}


@dataclass(frozen=True)
class Problem:
    """What is wrong, and where: `file:line`, the record's id, and why."""

    code: str  # torn_tail | invalid | unreadable | edited | forged | deleted | inserted |
    #            reordered | rewritten | sequence | missing_file | cut | head_mismatch |
    #            head_missing | head_invalid | no_key | anchor_missing |
    #            checkpoint_missing | checkpoint_invalid
    file: Path
    line: int | None
    record_id: str | None
    reason: str
    offset: int | None = None  # byte offset where the line starts (torn tails: where to cut)

    @classmethod
    def in_file(cls, code: str, file: Path, reason: str) -> Problem:
        """A problem with a whole file, not with one line of it."""
        return cls(code, file, None, None, reason)

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
    seal_problem: Problem | None = None  # the head file, or the key to check it with
    sealed_records: int | None = None  # how many records the head file vouches for
    anchor: str | None = None
    anchor_problem: Problem | None = None
    anchor_line: str | None = None  # file:line of the anchored record
    records_after_anchor: int | None = None
    checkpoint: Checkpoint | None = None
    checkpoint_problem: Problem | None = None
    checkpoint_line: str | None = None  # file:line of the record the checkpoint names
    records_after_checkpoint: int | None = None
    warnings: tuple[str, ...] = ()
    # Found by where the trail was copied from (the cluster's segments, their signed
    # head), and what was or was not checked there: see commands.cluster_trail.
    source_problems: tuple[Problem, ...] = ()
    notes: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def tampered(self) -> bool:
        """Anything wrong but a torn tail (which an interrupted append leaves)."""
        return any(problem is not self.torn_tail for problem in self.problems)

    @property
    def problems(self) -> list[Problem]:
        found = [
            self.first_bad,
            self.seal_problem,
            self.torn_tail,
            self.anchor_problem,
            self.checkpoint_problem,
            *self.source_problems,
        ]
        return [problem for problem in found if problem is not None]

    def summary(self) -> str:
        """One line: what failed first, or what was verified."""
        if self.first_bad:
            return f"audit trail broken at {self.first_bad.describe()}"
        if self.seal_problem:
            headline = _SEAL_HEADLINES[self.seal_problem.code]
            return f"{headline}: {self.seal_problem.describe()}"
        if self.torn_tail:
            return f"audit trail ends in a torn record: {self.torn_tail.describe()}"
        if self.anchor_problem:
            return f"audit trail does not contain the anchor: {self.anchor_problem.reason}"
        if self.checkpoint_problem and self.checkpoint_problem.code == "checkpoint_invalid":
            return f"the checkpoint cannot be trusted: {self.checkpoint_problem.reason}"
        if self.checkpoint_problem:
            return (
                f"audit trail does not contain the checkpoint: {self.checkpoint_problem.describe()}"
            )
        if self.source_problems:
            return f"audit trail not as its signed head says: {self.source_problems[0].describe()}"
        if not self.files:
            return f"no audit trail at {self.path} yet: nothing to verify"
        return f"audit trail ok: {self.records} records in {len(self.files)} file(s)"

    def lines(self) -> list[str]:
        """Everything a person needs, one fact per line."""
        out = [self.summary()]
        out += [f"also: {p.describe()}" for p in self.problems[1:]]
        if self.torn_tail and self.torn_tail.offset is not None and not self.tampered:
            out.append(
                f"the torn bytes start at byte {self.torn_tail.offset} of {self.torn_tail.file}; "
                "keep a copy of the file, then cut them off with "
                f"`truncate -s {self.torn_tail.offset} {self.torn_tail.file}` to record again"
            )
        if self.anchor and self.anchor_line:
            after = self.records_after_anchor or 0
            tail = "it is the head" if after == 0 else f"{after} records follow it"
            out.append(f"anchor {self.anchor[:12]}... found at {self.anchor_line}; {tail}")
        if self.checkpoint and self.checkpoint_line:
            after = self.records_after_checkpoint or 0
            tail = "it is the head" if after == 0 else f"{after} records follow it"
            out.append(
                f"checkpoint of {self.checkpoint.ts} (record {self.checkpoint.count}, signed "
                f"by {self.checkpoint.public_key}) found at {self.checkpoint_line}; {tail}"
            )
        if self.sealed_records is not None:
            out.append(
                f"head file {head_path(self.path).name}: {self.sealed_records} records, MAC checked"
            )
        verified = "verified" if self.first_bad is None else "verified before the break"
        out.append(f"{self.records} records {verified}; head {self.head or '(empty trail)'}")
        out += list(self.notes)
        out += [f"warning: {warning}" for warning in self.warnings]
        return out

    def to_dict(self) -> dict[str, Any]:
        def problem(found: Problem | None) -> dict[str, Any] | None:
            return found.to_dict() if found else None

        return {
            "ok": self.ok,
            "path": str(self.path),
            "files": [str(path) for path in self.files],
            "records": self.records,
            "head": self.head,
            "first_bad": problem(self.first_bad),
            "torn_tail": problem(self.torn_tail),
            "seal_problem": problem(self.seal_problem),
            "sealed_records": self.sealed_records,
            "anchor": self.anchor,
            "anchor_found": None if self.anchor is None else self.anchor_problem is None,
            "anchor_at": self.anchor_line,
            "records_after_anchor": self.records_after_anchor,
            "checkpoint": self.checkpoint.to_dict() if self.checkpoint else None,
            "checkpoint_found": (
                None if self.checkpoint is None else self.checkpoint_problem is None
            ),
            "checkpoint_problem": problem(self.checkpoint_problem),
            "checkpoint_at": self.checkpoint_line,
            "records_after_checkpoint": self.records_after_checkpoint,
            "warnings": list(self.warnings),
            "source_problems": [p.to_dict() for p in self.source_problems],
            "notes": list(self.notes),
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
    unreadable: bool = False  # the whole file: `error` says why
    hash_ok: bool = False

    def _text(self, key: str) -> str | None:
        value = self.record.get(key) if self.record else None
        return value if isinstance(value, str) else None

    @property
    def id(self) -> str | None:
        return self._text("id")

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
    def mac(self) -> str | None:
        return self._text("mac")

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line}"


def _read_file(file: Path) -> bytes:
    """The bytes of one trail file; OSError or ValueError saying why it cannot be read."""
    # O_NONBLOCK: a FIFO in a file's place must not hang verify before fstat refuses it.
    fd = os.open(file, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        mode = os.fstat(fd).st_mode
        if stat.S_ISDIR(mode):
            raise ValueError("is a directory, not a file")
        if not stat.S_ISREG(mode):
            raise ValueError("is not a regular file")
        chunks = []
        while chunk := os.read(fd, 1 << 20):
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def _entries(file: Path) -> Iterator[_Entry]:
    try:
        data = _read_file(file)
    except OSError as exc:
        yield _Entry(file, 0, 0, error=f"cannot be read: {exc.strerror}", unreadable=True)
        return
    except ValueError as exc:
        yield _Entry(file, 0, 0, error=str(exc), unreadable=True)
        return
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
        entry = _Entry(file, number, offset)
        try:
            entry.record = parse_record(data[offset:end])
        except ValueError as exc:
            entry.error = str(exc)
        else:
            entry.hash_ok = record_hash(entry.record) == entry.record["hash"]
        yield entry
        offset = end + 1


# --- the walk ---------------------------------------------------------------------------


@dataclass
class _Walk:
    path: Path
    key: RecordKey | None
    keep: bool
    files: list[Path] = field(default_factory=list)
    entries: list[_Entry] = field(default_factory=list)
    good: list[_Entry] = field(default_factory=list)
    records: list[Record] = field(default_factory=list)
    first_bad: Problem | None = None
    torn_tail: Problem | None = None
    macs_started: bool = False

    def run(self) -> None:
        self.files = self._files()
        if self.first_bad is not None:
            return
        self.entries = [entry for file in self.files for entry in _entries(file)]
        entries = self.entries
        by_hash = {entry.hash: index for index, entry in enumerate(entries) if entry.record}
        for index, entry in enumerate(entries):
            if entry.torn and index == len(entries) - 1 and entry.file == self.files[-1]:
                self.torn_tail = _problem("torn_tail", entry, entry.error or "", entry.offset)
                return
            problem = self._check(index, entry, entries, by_hash)
            if problem is not None:
                self.first_bad = problem
                return
            self.good.append(entry)
            if self.keep and entry.record is not None:
                self.records.append(entry.record)

    def _files(self) -> list[Path]:
        try:
            rotated = rotated_files(self.path)
        except OSError as exc:
            self.first_bad = Problem.in_file(
                "unreadable", self.path.parent, f"cannot be listed: {exc.strerror}"
            )
            return []
        for expected, (number, file) in enumerate(rotated, start=1):
            if number != expected:
                missing = self.path.with_name(f"{self.path.name}.{expected}")
                self.first_bad = Problem.in_file(
                    "missing_file",
                    missing,
                    f"is missing: the rotated files jump from {expected - 1} to {number} "
                    f"({file.name} exists), so the records it held are gone",
                )
                break
        files = [file for _, file in rotated]
        if os.path.lexists(self.path):
            files.append(self.path)
        return files

    def _check(
        self, index: int, entry: _Entry, entries: list[_Entry], by_hash: dict[str, int]
    ) -> Problem | None:
        if entry.unreadable:
            return Problem.in_file("unreadable", entry.file, entry.error or "")
        if entry.record is None:
            return _problem("invalid", entry, f"is not a valid record: it {entry.error}")
        if not entry.hash_ok:
            return _problem(
                "edited",
                entry,
                "its content does not match its hash: it was changed after it was written",
            )
        problem = self._check_mac(entry)
        if problem is not None:
            return problem
        previous = self.good[-1] if self.good else None
        expected = previous.hash if previous else GENESIS_HASH
        if entry.prev_hash != expected:
            return self._chain_break(index, entry, entries, by_hash)
        expected_seq = previous.seq + 1 if previous else 1
        if entry.seq != expected_seq:
            return _problem(
                "sequence", entry, f"has seq {entry.seq} where {expected_seq} was expected"
            )
        return self._check_look(entry)

    def _check_look(self, entry: _Entry) -> Problem | None:
        """A looks record must name a full hold record before it that its looks fit."""
        record = entry.record
        if record is None or not looks.is_look(record):
            return None
        seq, hash_ = looks.base_of(record)
        base = None
        if isinstance(seq, int) and not isinstance(seq, bool) and 0 < seq <= len(self.good):
            base = self.good[seq - 1].record
        if base is None or base.get("hash") != hash_:
            return _problem(
                "invalid",
                entry,
                f"is a looks record whose full record (seq {seq}) is not in the trail before "
                "it, so its decisions cannot be read",
            )
        try:
            looks.expand_record(base, record)
        except looks.Misfit as exc:
            return _problem(
                "invalid", entry, f"is a looks record that does not fit its full record: {exc}"
            )
        return None

    def _check_mac(self, entry: _Entry) -> Problem | None:
        if entry.mac is None:
            # Records from before MACs are fine only before the first MAC'd one; the head
            # (or a later record's MAC, through the chain) vouches for them.
            if self.macs_started:
                return _problem(
                    "forged",
                    entry,
                    "has no MAC, though the records before it have one: it was not written "
                    "by swiftdeploy",
                )
            return None
        self.macs_started = True
        if self.key is not None and not self.key.record_mac_ok(entry.hash, entry.mac):
            return _problem(
                "forged",
                entry,
                "its MAC does not match the audit key: it was written (or rewritten with a "
                "recomputed hash) by someone without the key, or with another key",
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


def _rewritten(code: str, entry: _Entry, namer: str, named: str) -> Problem:
    """`entry` stands where `namer` (a head file, a checkpoint) names another record."""
    return _problem(
        code,
        entry,
        f"is not the record {namer} names as {named}: the trail was rewritten up to here",
    )


# --- the head file ----------------------------------------------------------------------


@dataclass(frozen=True)
class _Seal:
    problem: Problem | None = None
    sealed: int | None = None
    warning: str | None = None


def _check_seal(path: Path, walk: _Walk, key: RecordKey | None, key_error: str | None) -> _Seal:
    """The trail against its head file (see the module docstring)."""
    file = head_path(path)
    if not walk.entries and not os.path.lexists(file):
        return _Seal()  # nothing was ever recorded here: nothing to vouch for
    if key is None:
        return _Seal(Problem.in_file("no_key", file, key_error or "no audit key"))
    try:
        head = read_head(path, key)
    except HeadError as exc:
        return _Seal(Problem.in_file("head_invalid", file, str(exc)))
    except OSError as exc:
        return _Seal(Problem.in_file("head_invalid", file, f"cannot be read: {exc.strerror}"))
    if head is None:
        return _Seal(
            Problem.in_file(
                "head_missing",
                file,
                "is missing, though the trail holds records: records could have been cut "
                "from its end. If the trail was written before swiftdeploy kept a head file "
                "and verify finds nothing else, `swiftdeploy audit adopt` seals it",
            )
        )
    if walk.first_bad is not None:
        # The walk stopped at the break: what it reached says nothing about the end.
        return _Seal(sealed=head.count)
    return _compare(path, walk, head)


def _compare(path: Path, walk: _Walk, head: Head) -> _Seal:
    records = len(walk.good)
    named = f"record {head.count} (hash {head.hash[:12]}...)"
    if not walk.entries:
        return _Seal(
            Problem.in_file(
                "deleted" if not walk.files else "cut",
                path,
                f"holds no records, but its head file says it held {head.count}, the last "
                f"{named}. If you removed it on purpose, move {head_path(path).name} aside too",
            ),
            head.count,
        )
    if records < head.count:
        torn = (
            "; the torn line is a record the head counts as complete, so it was damaged, not "
            "interrupted"
            if walk.torn_tail
            else ""
        )
        return _Seal(
            Problem.in_file(
                "cut",
                walk.good[-1].file if walk.good else path,
                f"ends at record {records}, but its head file names {named}: "
                f"{head.count - records} record(s) were cut from its end{torn}",
            ),
            head.count,
        )
    sealed = walk.good[head.count - 1]
    if sealed.hash != head.hash:
        return _Seal(_rewritten("head_mismatch", sealed, "the head file", named), head.count)
    after = walk.good[head.count :]
    if not after:
        return _Seal(sealed=head.count)
    unsigned = next((entry for entry in after if entry.mac is None), None)
    if unsigned is not None:
        return _Seal(
            _problem(
                "forged",
                unsigned,
                f"has no MAC and comes after the last record the head file vouches for "
                f"(record {head.count}): it was not written by swiftdeploy",
            ),
            head.count,
        )
    return _Seal(
        sealed=head.count,
        warning=(
            f"the head file is {len(after)} record(s) behind the trail: an append was "
            "interrupted between writing its record and its head (the records' MACs vouch "
            "for them); the next append brings it up to date"
        ),
    )


# --- anchors and checkpoints ------------------------------------------------------------


def _mode_warnings(files: list[Path]) -> tuple[str, ...]:
    warnings = []
    for file in files:
        try:
            mode = os.stat(file).st_mode & 0o777
        except OSError:  # rotated away since the walk, or unreadable (reported already)
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


@dataclass(frozen=True)
class _Found:
    problem: Problem | None = None
    line: str | None = None
    after: int | None = None


def _find_anchor(path: Path, walk: _Walk, anchor: str) -> _Found:
    position = next((i for i, e in enumerate(walk.good) if e.hash == anchor), None)
    if position is None:
        return _Found(
            Problem.in_file(
                "anchor_missing",
                path,
                f"no verified record has hash {anchor}: records up to the anchor "
                "were removed or rewritten"
                + (" (or lie after the break)" if walk.first_bad else ""),
            )
        )
    return _Found(line=walk.good[position].where, after=len(walk.good) - position - 1)


def _find_checkpoint(
    path: Path, walk: _Walk, checkpoint: Checkpoint, signer: str | None
) -> tuple[_Found, str | None]:
    """(where the checkpoint's record is, a warning when its signer was not pinned)."""
    reason = checkpoints.signature_problem(checkpoint, signer)
    if reason:
        return _Found(Problem.in_file("checkpoint_invalid", path, reason)), None
    warning = (
        None
        if signer
        else (
            f"the checkpoint's signer {checkpoint.public_key} was not compared with a key you "
            "trust (no --key and no local signing key): it shows only that whoever holds "
            "that key saw this head"
        )
    )
    named = f"record {checkpoint.count} (hash {checkpoint.head[:12]}...)"
    if checkpoint.count > len(walk.good):
        later = " (or lie after the break)" if walk.first_bad or walk.torn_tail else ""
        return _Found(
            Problem.in_file(
                "checkpoint_missing",
                path,
                f"the checkpoint names {named}, but only {len(walk.good)} records verify: "
                f"records up to it were removed{later}",
            )
        ), warning
    entry = walk.good[checkpoint.count - 1]
    if entry.hash != checkpoint.head:
        return _Found(_rewritten("checkpoint_missing", entry, "the checkpoint", named)), warning
    return _Found(line=entry.where, after=len(walk.good) - checkpoint.count), warning


# --- verify -----------------------------------------------------------------------------


def read_trail(
    path: Path, anchor: str | None = None, *, keys: KeyStore | None = None
) -> tuple[list[Record], VerifyResult]:
    """Verify the trail and return the records that are good (in order) with the result."""
    return _verify(path, anchor, None, None, keys, keep=True)


def verify(
    path: Path,
    anchor: str | None = None,
    *,
    checkpoint: Checkpoint | None = None,
    signer: str | None = None,
    keys: KeyStore | None = None,
) -> VerifyResult:
    """Check the whole trail, its head, and the anchor and checkpoint when given.

    `signer` is the public key the checkpoint must be signed with (default: the local
    signing key, when there is one). Never raises for what the files hold.
    """
    return _verify(path, anchor, checkpoint, signer, keys, keep=False)[1]


def _load_key(keys: KeyStore | None) -> tuple[KeyStore | None, RecordKey | None, str | None]:
    """(the key store, the audit key, why there is no key)."""
    try:
        store = keys or KeyStore.from_environment()
        key = store.existing_record_key()
    except AuditError as exc:
        return None, None, exc.one_line()
    if key is None:
        return store, None, store.missing_reason()
    return store, key, None


def _local_signer(store: KeyStore | None) -> tuple[str | None, str | None]:
    """(the local signing key's public half, why it could not be read)."""
    if store is None:
        return None, None
    try:
        return checkpoints.local_public_key(store), None
    except AuditError as exc:
        return None, exc.one_line()


def _verify(
    path: Path,
    anchor: str | None,
    checkpoint: Checkpoint | None,
    signer: str | None,
    keys: KeyStore | None,
    *,
    keep: bool,
) -> tuple[list[Record], VerifyResult]:
    checked_anchor = _check_anchor(anchor) if anchor is not None else None
    store, key, key_error = _load_key(keys)
    walk = _Walk(path, key, keep=keep)
    with shared_lock(path):
        walk.run()
        seal = _check_seal(path, walk, key, key_error)
    warnings = list(_mode_warnings(walk.files))
    if seal.warning:
        warnings.append(seal.warning)
    anchored = _find_anchor(path, walk, checked_anchor) if checked_anchor else _Found()
    found = _Found()
    if checkpoint is not None:
        signer_error = None
        if signer is None:
            signer, signer_error = _local_signer(store)
        if signer_error:
            found = _Found(Problem.in_file("checkpoint_invalid", path, signer_error))
        else:
            found, warning = _find_checkpoint(path, walk, checkpoint, signer)
            if warning:
                warnings.append(warning)
    result = VerifyResult(
        path=path,
        files=tuple(walk.files),
        records=len(walk.good),
        head=walk.good[-1].hash if walk.good else None,
        first_bad=walk.first_bad,
        torn_tail=walk.torn_tail,
        seal_problem=seal.problem,
        sealed_records=seal.sealed if seal.problem is None else None,
        anchor=checked_anchor,
        anchor_problem=anchored.problem,
        anchor_line=anchored.line,
        records_after_anchor=anchored.after,
        checkpoint=checkpoint,
        checkpoint_problem=found.problem,
        checkpoint_line=found.line,
        records_after_checkpoint=found.after,
        warnings=tuple(warnings),
    )
    return walk.records, result
