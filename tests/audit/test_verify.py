"""verify: every kind of tampering is found, and the first bad record is named."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from swiftdeploy.audit.log import AuditLog
from swiftdeploy.audit.verify import verify
from swiftdeploy.errors import BadInputError

N = 20


@pytest.fixture
def trail(trail_path: Path) -> Path:
    log = AuditLog(trail_path, 10_000_000, [], command=["swiftdeploy", "test"])
    for i in range(N):
        log.append("command", rollout_id="r-1", n=i)
    return trail_path


def read(path: Path) -> list[str]:
    return path.read_text().splitlines()


def write(path: Path, lines: list[str]) -> None:
    path.write_text("".join(line + "\n" for line in lines))


def rehash(record: dict[str, Any]) -> dict[str, Any]:
    body = {k: v for k, v in record.items() if k != "hash"}
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return {**body, "hash": hashlib.sha256(canonical.encode()).hexdigest()}


def dump(record: dict[str, Any]) -> str:
    return json.dumps(record, sort_keys=True, separators=(",", ":"))


def test_an_untouched_trail_verifies(trail: Path) -> None:
    result = verify(trail)
    assert result.ok
    assert result.records == N
    assert result.head == json.loads(read(trail)[-1])["hash"]
    assert result.summary() == f"audit trail ok: {N} records in 1 file(s)"


def test_an_edited_value_is_found(trail: Path) -> None:
    lines = read(trail)
    victim = json.loads(lines[6])
    lines[6] = lines[6].replace('"n":6', '"n":600')
    write(trail, lines)

    result = verify(trail)
    assert not result.ok
    bad = result.first_bad
    assert bad is not None
    assert (bad.code, bad.file, bad.line, bad.record_id) == ("edited", trail, 7, victim["id"])
    assert "changed after it was written" in bad.reason
    assert result.records == 6
    assert f"{trail}:7" in result.summary()


def test_a_deleted_line_is_found(trail: Path) -> None:
    lines = read(trail)
    follower = json.loads(lines[7])
    del lines[6]
    write(trail, lines)

    bad = verify(trail).first_bad
    assert bad is not None
    assert (bad.code, bad.line, bad.record_id) == ("deleted", 7, follower["id"])
    assert "1 record(s) before it are missing" in bad.reason


def test_two_swapped_lines_are_found(trail: Path) -> None:
    lines = read(trail)
    moved = json.loads(lines[7])
    lines[6], lines[7] = lines[7], lines[6]
    write(trail, lines)

    bad = verify(trail).first_bad
    assert bad is not None
    assert (bad.code, bad.line, bad.record_id) == ("reordered", 7, moved["id"])
    assert f"{trail}:8" in bad.reason  # where the record it follows went


def test_a_forged_line_with_a_recomputed_hash_is_found(trail: Path) -> None:
    lines = read(trail)
    before = json.loads(lines[5])
    forged = rehash(
        {
            **json.loads(lines[6]),
            "id": "forged-0000",
            "n": "approved by nobody",
            "prev_hash": before["hash"],
            "seq": before["seq"] + 1,
        }
    )
    assert forged["hash"] == rehash(forged)["hash"]  # internally consistent
    lines.insert(6, dump(forged))
    write(trail, lines)

    result = verify(trail)
    bad = result.first_bad
    assert bad is not None
    assert (bad.code, bad.line, bad.record_id) == ("inserted", 7, "forged-0000")
    assert "was inserted" in bad.reason
    assert result.records == 7  # the forgery itself chains; the record after it does not


def test_a_rewritten_record_with_a_recomputed_hash_is_found(trail: Path) -> None:
    lines = read(trail)
    original = json.loads(lines[6])
    lines[6] = dump(rehash({**original, "n": "rewritten"}))
    write(trail, lines)

    bad = verify(trail).first_bad
    assert bad is not None
    assert (bad.code, bad.line, bad.record_id) == ("rewritten", 7, original["id"])


def test_a_forged_first_record_is_found(trail: Path) -> None:
    lines = read(trail)
    forged = rehash({**json.loads(lines[0]), "id": "forged-first", "n": "x"})
    lines.insert(0, dump(forged))
    write(trail, lines)

    bad = verify(trail).first_bad
    assert bad is not None
    assert (bad.code, bad.line, bad.record_id) == ("inserted", 1, "forged-first")


def test_garbage_in_the_middle_is_found(trail: Path) -> None:
    lines = read(trail)
    lines[3] = "{not json"
    write(trail, lines)
    bad = verify(trail).first_bad
    assert bad is not None
    assert (bad.code, bad.line, bad.record_id) == ("invalid", 4, None)


def test_the_first_problem_wins(trail: Path) -> None:
    lines = read(trail)
    lines[12] = lines[12].replace('"n":12', '"n":13')
    lines[4] = lines[4].replace('"n":4', '"n":5')
    write(trail, lines)
    bad = verify(trail).first_bad
    assert bad is not None
    assert bad.line == 5


def test_a_torn_tail_is_reported_apart_from_tampering(trail: Path) -> None:
    data = trail.read_bytes()
    start = data.rstrip(b"\n").rfind(b"\n") + 1
    trail.write_bytes(data[: start + 30])

    result = verify(trail)
    assert not result.ok
    assert result.first_bad is None
    torn = result.torn_tail
    assert torn is not None
    assert (torn.code, torn.line, torn.offset) == ("torn_tail", N, start)
    assert "torn" in result.summary()
    assert result.records == N - 1  # everything before it is intact
    text = "\n".join(result.lines())
    assert f"truncate -s {start} {trail}" in text


def test_an_anchor_catches_records_cut_off_the_end(trail: Path) -> None:
    head = verify(trail).head
    assert head is not None
    middle = json.loads(read(trail)[9])["hash"]

    ok = verify(trail, anchor=head)
    assert ok.ok
    assert ok.records_after_anchor == 0
    assert any("it is the head" in line for line in ok.lines())
    earlier = verify(trail, anchor=middle)
    assert earlier.ok
    assert earlier.records_after_anchor == N - 10
    assert earlier.anchor_line == f"{trail}:10"

    write(trail, read(trail)[:-3])  # a clean cut: the chain alone cannot tell
    assert verify(trail).ok
    cut = verify(trail, anchor=head)
    assert not cut.ok
    assert cut.anchor_problem is not None
    assert "no verified record has hash" in cut.summary()
    assert cut.to_dict()["anchor_found"] is False


def test_a_malformed_anchor_is_bad_input(trail: Path) -> None:
    with pytest.raises(BadInputError, match="not a record hash"):
        verify(trail, anchor="abc")


def test_a_missing_rotated_file_is_found(trail_path: Path) -> None:
    log = AuditLog(trail_path, 4096, [])
    for i in range(60):
        log.append("command", n=i, pad="x" * 200)
    second = trail_path.with_name("history.jsonl.2")
    assert second.exists()
    second.unlink()

    bad = verify(trail_path).first_bad
    assert bad is not None
    assert (bad.code, bad.file) == ("missing_file", second)


def test_a_missing_trail_is_empty_and_fine(tmp_path: Path) -> None:
    path = tmp_path / "nothing" / "history.jsonl"
    result = verify(path)
    assert result.ok
    assert result.records == 0
    assert result.head is None
    assert result.summary() == f"no audit trail at {path} yet: nothing to verify"
    assert not path.parent.exists()  # verifying creates nothing
    assert not verify(path, anchor="a" * 64).ok


def test_json_form(trail: Path) -> None:
    lines = read(trail)
    del lines[2]
    write(trail, lines)
    data = verify(trail).to_dict()
    assert data["ok"] is False
    assert data["first_bad"]["line"] == 3
    assert data["first_bad"]["code"] == "deleted"
    assert data["first_bad"]["file"] == str(trail)
    assert json.loads(json.dumps(data)) == data
