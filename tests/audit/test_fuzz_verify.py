"""Property-based fuzzing of `verify` (and of `append` after it) over mutated trails.

A real trail across rotated files and its head file is mutated once per example: a byte
flipped, a line dropped, duplicated, swapped or inserted (garbage, or a genuine line
from elsewhere in the trail), a file truncated or deleted. Whatever the result, verify
returns a VerifyResult (never raises) and never says ok when the trail's records or
head changed (a line moved across a rotation boundary changes neither); append either
refuses with an AuditError or appends without hiding the change. Random files get the
same treatment. CI runs FUZZ_EXAMPLES examples per property (default 300), as
tests/security/test_fuzz.py does.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from swiftdeploy.audit.log import AuditLog
from swiftdeploy.audit.verify import VerifyResult, verify
from swiftdeploy.errors import AuditError

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "300"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
MAX_BYTES = 1500  # a few records per file, so mutations land in rotated files too
KINDS = ("flip", "drop", "duplicate", "swap", "insert_garbage", "insert_copy", "truncate", "delete")

Files = dict[str, bytes]


@dataclass(frozen=True)
class Trail:
    path: Path
    files: Files  # name -> bytes, the trail as written: history.jsonl, .1, .2, ..., .head

    def __repr__(self) -> str:  # hypothesis prints it with every failing example
        return f"Trail({self.path}, {sorted(self.files)})"


@pytest.fixture
def trail(trail_path: Path) -> Trail:
    log = AuditLog(trail_path, MAX_BYTES, [])
    for i in range(14):
        log.append("command", rollout_id="r-1", n=i, pad="x" * 100)
    files = {p.name: p.read_bytes() for p in trail_path.parent.iterdir() if owned(trail_path, p)}
    assert len(files) >= 4, files  # the current file, rotated ones and the head
    return Trail(trail_path, files)


def owned(path: Path, candidate: Path) -> bool:
    """A file of the trail that a mutation may touch (not the lock)."""
    return candidate.name.startswith(path.name) and candidate.name != path.name + ".lock"


def lay(path: Path, files: Files) -> None:
    """Make the directory hold exactly `files` (the lock file apart)."""
    for existing in path.parent.iterdir():
        if owned(path, existing):
            existing.unlink()
    for name, data in files.items():
        (path.parent / name).write_bytes(data)


def split(data: bytes) -> list[bytes]:
    return data.split(b"\n")[:-1] if data.endswith(b"\n") else data.split(b"\n")


def join(lines: list[bytes]) -> bytes:
    return b"".join(line + b"\n" for line in lines)


def mutate(files: Files, kind: str, draw: st.DrawFn) -> Files:
    name = draw(st.sampled_from(sorted(files)))
    data = files[name]
    lines = split(data)
    out = dict(files)
    if kind not in ("insert_garbage", "insert_copy", "delete"):
        assume(data)  # an earlier mutation emptied it: nothing here to change
    if kind == "flip":
        at = draw(st.integers(0, len(data) - 1))
        flipped = data[at] ^ draw(st.integers(1, 255))
        out[name] = data[:at] + bytes([flipped]) + data[at + 1 :]
    elif kind == "drop":
        del lines[draw(st.integers(0, len(lines) - 1))]
        out[name] = join(lines)
    elif kind == "duplicate":
        at = draw(st.integers(0, len(lines) - 1))
        lines.insert(at, lines[at])
        out[name] = join(lines)
    elif kind == "swap":
        first, second = draw(st.integers(0, len(lines) - 1)), draw(st.integers(0, len(lines) - 1))
        lines[first], lines[second] = lines[second], lines[first]
        out[name] = join(lines)
    elif kind in ("insert_garbage", "insert_copy"):
        if kind == "insert_garbage":
            line = draw(st.binary(max_size=200).map(lambda b: b.replace(b"\n", b"")))
        else:
            source = split(files[draw(st.sampled_from(sorted(files)))])
            assume(source)
            line = source[draw(st.integers(0, len(source) - 1))]
        lines.insert(draw(st.integers(0, len(lines))), line)
        out[name] = join(lines)
    elif kind == "truncate":
        out[name] = data[: draw(st.integers(0, len(data) - 1))]
    else:
        del out[name]
    return out


def logical(files: Files) -> tuple[bytes, bytes | None]:
    """What the trail says, whatever the file boundaries: the records in order (rotated
    files oldest first, then the current one) and the head. Moving a line across a
    rotation boundary changes the files but not the trail."""
    rotated = sorted(
        (int(name.rsplit(".", 1)[1]), data)
        for name, data in files.items()
        if name.rsplit(".", 1)[1].isdigit()
    )
    current = next((data for name, data in files.items() if name.endswith(".jsonl")), b"")
    head = next((data for name, data in files.items() if name.endswith(".head")), None)
    return b"".join(data for _, data in rotated) + current, head


def check_verify(path: Path) -> VerifyResult:
    """verify as the CLI uses it: a result, its lines and its JSON, never an exception."""
    result = verify(path)
    assert isinstance(result, VerifyResult)
    assert result.lines()
    json.dumps(result.to_dict())
    return result


def append_refuses_or_keeps_the_change_visible(path: Path) -> None:
    try:
        AuditLog(path, MAX_BYTES, []).append("command", n="after the mutation")
    except AuditError:
        return
    assert not check_verify(path).ok


@FUZZ
@given(data=st.data())
def test_verify_never_accepts_a_mutated_trail(trail: Trail, data: st.DataObject) -> None:
    kind = data.draw(st.sampled_from(KINDS))
    mutated = mutate(trail.files, kind, data.draw)
    assume(logical(mutated) != logical(trail.files))  # e.g. two equal lines swapped
    lay(trail.path, mutated)

    result = check_verify(trail.path)
    assert not result.ok, (kind, result.lines())
    append_refuses_or_keeps_the_change_visible(trail.path)


@FUZZ
@given(data=st.data())
def test_two_mutations_are_never_accepted_either(trail: Trail, data: st.DataObject) -> None:
    once = mutate(trail.files, data.draw(st.sampled_from(KINDS)), data.draw)
    assume(once)
    twice = mutate(once, data.draw(st.sampled_from(KINDS)), data.draw)
    assume(logical(twice) != logical(trail.files))  # e.g. a line moved to the next file
    lay(trail.path, twice)
    assert not check_verify(trail.path).ok
    append_refuses_or_keeps_the_change_visible(trail.path)


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False)
    | st.text(max_size=20)
    | st.sampled_from(["NaN", "Infinity", "1e999", "\ud800"]),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=10,
)
garbage_lines = st.one_of(
    st.binary(max_size=120).map(lambda b: b.replace(b"\n", b"")),
    json_values.map(lambda v: json.dumps(v).encode()),
    st.sampled_from([b"[" * 5000, b'{"a":1,"a":2}', b"\x00", b"\xff", b"{}", b"NaN"]),
)


@FUZZ
@given(
    lines=st.lists(garbage_lines, max_size=6),
    torn=st.booleans(),
    with_head=st.booleans(),
)
def test_random_files_are_never_a_crash(
    trail: Trail, lines: list[bytes], torn: bool, with_head: bool
) -> None:
    content = join(lines)
    if torn and content:
        content = content[:-1]
    files = {trail.path.name: content}
    head = trail.path.name + ".head"
    if with_head:
        files[head] = trail.files[head]
    lay(trail.path, files)

    result = check_verify(trail.path)
    if content or with_head:  # else: an empty trail, which the next append starts
        assert not result.ok, result.lines()
        append_refuses_or_keeps_the_change_visible(trail.path)


@FUZZ
@given(head=st.binary(max_size=600))
def test_a_random_head_file_is_never_trusted(trail: Trail, head: bytes) -> None:
    name = trail.path.name + ".head"
    assume(head != trail.files[name])
    lay(trail.path, {**trail.files, name: head})
    result = check_verify(trail.path)
    assert not result.ok
    assert result.seal_problem is not None
    append_refuses_or_keeps_the_change_visible(trail.path)
