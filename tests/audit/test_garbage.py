"""Whatever a trail file holds, verify returns a result whose Problem says what is wrong,
and append refuses to continue it with an AuditError that points to verify."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from swiftdeploy.audit.head import head_path
from swiftdeploy.audit.log import AuditLog
from swiftdeploy.audit.verify import verify
from swiftdeploy.errors import AuditError
from tests.support.trails import write_trail

N = 5

GARBAGE = {
    "binary": (bytes(range(256)).replace(b"\n", b""), "is not UTF-8"),
    "invalid utf-8": (b'{"id":"\xff\xfe"}', "is not UTF-8"),
    "utf-16 guessable from NULs": ('{"a":1}'.encode("utf-16-be"), "is not valid JSON"),
    "nul bytes": (b'{"id":"a\x00b"}', "is not valid JSON"),
    "huge integer": (b'{"n":' + b"9" * 5000 + b"}", "is not valid JSON"),
    "huge float": (b'{"n":1e999}', "too large for a float"),
    "deep nesting": (b"[" * 50_000 + b"]" * 50_000, "nested too deeply"),
    "not an object": (b'["a list"]', "is not a JSON object"),
    "a bare string": (b'"text"', "is not a JSON object"),
    "null": (b"null", "is not a JSON object"),
    "empty line": (b"", "is not valid JSON"),
    "a lone surrogate": (b'{"id":"\\ud800"}', "has no valid hash"),
    "a carriage return": (b"{}\r", "has no valid hash"),
}


@pytest.fixture
def trail(trail_path: Path) -> Path:
    return write_trail(trail_path, N)


def put_line(path: Path, index: int, raw: bytes) -> None:
    text = path.read_bytes().split(b"\n")[:-1]
    text[index] = raw
    path.write_bytes(b"".join(line + b"\n" for line in text))


@pytest.mark.parametrize("name", GARBAGE)
def test_garbage_in_a_line_is_a_problem_with_its_reason(trail: Path, name: str) -> None:
    raw, reason = GARBAGE[name]
    put_line(trail, 2, raw)
    result = verify(trail)
    bad = result.first_bad
    assert bad is not None
    assert (bad.code, bad.line) == ("invalid", 3)
    assert reason in bad.reason
    assert result.records == 2
    assert json.loads(json.dumps(result.to_dict()))["ok"] is False


@pytest.mark.parametrize("name", GARBAGE)
def test_garbage_as_the_last_line_stops_append(trail: Path, name: str) -> None:
    raw, reason = GARBAGE[name]
    put_line(trail, N - 1, raw)
    before = trail.read_bytes()
    with pytest.raises(AuditError) as caught:
        AuditLog(trail, 10_000_000, []).append("command", n="next")
    message = caught.value.one_line()
    assert f"line {N}" in message
    assert reason in message
    assert "swiftdeploy audit verify" in message
    assert trail.read_bytes() == before


def test_a_whole_file_of_garbage(trail_path: Path) -> None:
    trail_path.parent.mkdir(parents=True)
    trail_path.write_bytes(os.urandom(4096).replace(b"\n", b"\x00") + b"\n")
    bad = verify(trail_path).first_bad
    assert bad is not None
    assert (bad.code, bad.line) == ("invalid", 1)


def test_a_directory_where_the_trail_should_be(trail: Path) -> None:
    trail.unlink()
    trail.mkdir()
    bad = verify(trail).first_bad
    assert bad is not None
    assert (bad.code, bad.file) == ("unreadable", trail)
    assert "is a directory, not a file" in bad.reason
    with pytest.raises(AuditError, match="is not a regular file"):
        AuditLog(trail, 10_000_000, []).append("command")


def test_a_directory_where_a_rotated_file_should_be(trail_path: Path) -> None:
    log = AuditLog(trail_path, 1024, [])
    for i in range(12):
        log.append("command", n=i, pad="x" * 150)
    second = trail_path.with_name("history.jsonl.2")
    second.unlink()
    second.mkdir()
    bad = verify(trail_path).first_bad
    assert bad is not None
    assert (bad.code, bad.file) == ("unreadable", second)
    assert "is a directory" in bad.reason


def test_a_fifo_where_the_trail_should_be_does_not_hang(trail: Path) -> None:
    trail.unlink()
    os.mkfifo(trail)
    bad = verify(trail).first_bad
    assert bad is not None
    assert (bad.code, bad.reason) == ("unreadable", "is not a regular file")
    head_path(trail).unlink()  # so that nothing but the FIFO itself could stop append
    with pytest.raises(AuditError, match="is not a regular file"):
        AuditLog(trail, 10_000_000, []).append("command")


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"", "is not a head file"),
        (b"\xff\xfe\n", "is not UTF-8"),
        (b'{"format":"swiftdeploy-audit-head/v1","count":NaN}\n', "holds NaN"),
        (b"[" * 3000 + b"\n", "is not a head file"),
        (b'{"format":"something else"}\n', "is not a head file"),
        (b'{"count":1,"count":2}\n', "has the key 'count' twice"),
    ],
)
def test_garbage_in_the_head_file(trail: Path, content: bytes, reason: str) -> None:
    head_path(trail).write_bytes(content)
    problem = verify(trail).seal_problem
    assert problem is not None
    assert problem.code == "head_invalid"
    assert reason in problem.reason
    with pytest.raises(AuditError, match="swiftdeploy audit verify"):
        AuditLog(trail, 10_000_000, []).append("command")


def test_a_directory_where_the_head_file_should_be(trail: Path) -> None:
    head_path(trail).unlink()
    head_path(trail).mkdir()
    problem = verify(trail).seal_problem
    assert problem is not None
    assert (problem.code, problem.reason) == (
        "head_invalid",
        f"{head_path(trail)} is not a regular file",
    )


def test_garbage_where_the_lock_file_should_be(trail: Path) -> None:
    lock = trail.with_name("history.jsonl.lock")
    lock.unlink()
    os.mkfifo(lock)
    assert verify(trail).ok  # a reader only waits for writers; there are none to wait for
