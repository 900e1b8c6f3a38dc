"""verify: every kind of tampering is found, and the first bad record is named."""

from __future__ import annotations

import copy
import hashlib
import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from swiftdeploy.audit.head import head_path
from swiftdeploy.audit.log import AuditLog
from swiftdeploy.audit.looks import compact, pack
from swiftdeploy.audit.verify import verify
from swiftdeploy.errors import BadInputError
from tests.support.trails import a_decision, trail_lines, write_lines, write_trail

N = 20


@pytest.fixture
def trail(trail_path: Path) -> Path:
    return write_trail(trail_path, N, rollout_id="r-1")


read = trail_lines
write = write_lines


def rehash(record: dict[str, Any]) -> dict[str, Any]:
    """What someone without the key can do: recompute the hash (the MAC stays as it was)."""
    body = {k: v for k, v in record.items() if k not in ("hash", "mac")}
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return {**record, "hash": hashlib.sha256(canonical.encode()).hexdigest()}


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
    # It chains, but only the key holder can MAC a record.
    assert (bad.code, bad.line, bad.record_id) == ("forged", 7, "forged-0000")
    assert "MAC does not match" in bad.reason
    assert result.records == 6


def test_a_rewritten_record_with_a_recomputed_hash_is_found(trail: Path) -> None:
    lines = read(trail)
    original = json.loads(lines[6])
    lines[6] = dump(rehash({**original, "n": "rewritten"}))
    write(trail, lines)

    bad = verify(trail).first_bad
    assert bad is not None
    assert (bad.code, bad.line, bad.record_id) == ("forged", 7, original["id"])


def test_a_forged_first_record_is_found(trail: Path) -> None:
    lines = read(trail)
    forged = rehash({**json.loads(lines[0]), "id": "forged-first", "n": "x"})
    lines.insert(0, dump(forged))
    write(trail, lines)

    bad = verify(trail).first_bad
    assert bad is not None
    assert (bad.code, bad.line, bad.record_id) == ("forged", 1, "forged-first")


def test_a_record_from_another_copy_of_the_trail_is_placed(trail: Path, tmp_path: Path) -> None:
    """A genuine record (its MAC holds) where it does not belong: the chain tells where."""
    fork = tmp_path / "fork" / "history.jsonl"
    fork.parent.mkdir()
    shutil.copy(trail, fork)
    shutil.copy(head_path(trail), head_path(fork))
    AuditLog(fork, 10_000_000, []).append("command", n="elsewhere")
    AuditLog(fork, 10_000_000, []).append("command", n="elsewhere too")
    ours = AuditLog(trail, 10_000_000, [])
    ours.append("command", n=N)
    ours.append("command", n=N + 1)
    lines, theirs = read(trail), read(fork)

    write(trail, [*lines[:N], theirs[N], *lines[N:]])
    bad = verify(trail).first_bad
    assert bad is not None
    assert (bad.code, bad.line) == ("inserted", N + 1)
    assert bad.record_id == json.loads(theirs[N])["id"]

    write(trail, [*lines[: N + 1], theirs[N + 1]])
    bad = verify(trail).first_bad
    assert bad is not None
    assert (bad.code, bad.line) == ("rewritten", N + 1)
    assert bad.record_id == json.loads(lines[N])["id"]


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
    """What a writer killed inside its write() leaves: the start of a record after the last
    one the head counts."""
    start = trail.stat().st_size
    with trail.open("ab") as handle:
        handle.write(read(trail)[-1].encode()[:30])

    result = verify(trail)
    assert not result.ok
    assert not result.tampered
    assert result.first_bad is None
    assert result.seal_problem is None
    torn = result.torn_tail
    assert torn is not None
    assert (torn.code, torn.line, torn.offset) == ("torn_tail", N + 1, start)
    assert "torn" in result.summary()
    assert result.records == N  # everything before it is intact
    text = "\n".join(result.lines())
    assert f"truncate -s {start} {trail}" in text


def test_a_sealed_record_cut_into_a_torn_line_is_tampering(trail: Path) -> None:
    """The head counts the last record as complete, so a torn last record was damaged
    after it was written, not interrupted: no hint to cut it off."""
    data = trail.read_bytes()
    start = data.rstrip(b"\n").rfind(b"\n") + 1
    trail.write_bytes(data[: start + 30])

    result = verify(trail)
    assert result.tampered
    assert result.torn_tail is not None
    seal = result.seal_problem
    assert seal is not None
    assert seal.code == "cut"
    assert f"ends at record {N - 1}, but its head file names record {N}" in seal.reason
    assert "damaged, not interrupted" in seal.reason
    assert "truncate -s" not in "\n".join(result.lines())


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

    write(trail, read(trail)[:-3])  # a clean cut: the chain alone cannot tell, the head can
    assert verify(trail).seal_problem is not None
    cut = verify(trail, anchor=head)
    assert not cut.ok
    assert cut.anchor_problem is not None
    assert "no verified record has hash" in "\n".join(cut.lines())
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


def _with_looks(
    path: Path,
    change_look: Callable[[dict[str, Any]], None] = lambda look: None,
    change_base: Callable[[dict[str, Any]], None] = lambda named: None,
) -> Path:
    """A full hold, a looks record at it, then one more whose looks are changed by
    `change_look` and whose reference to the full record by `change_base`."""
    log = AuditLog(path, 10**7)
    base = log.append("decision", action="hold", decision=a_decision())
    look = compact(base, base["decision"], base["ts"])
    log.append("decision", action="hold", decision=pack(base, [look, look]))
    bad = copy.deepcopy(look)
    change_look(bad)
    packed = pack(base, [bad, bad])
    change_base(packed["looks"]["base"])
    log.append("decision", action="hold", decision=packed)
    return path


def test_looks_records_that_name_their_full_record_verify(trail_path: Path) -> None:
    result = verify(_with_looks(trail_path))
    assert result.ok
    assert result.records == 3


@pytest.mark.parametrize(
    ("change", "says"),
    [
        ({"change_base": lambda b: b.update(seq=7)}, "(seq 7) is not in the trail before it"),
        ({"change_base": lambda b: b.update(seq=3)}, "(seq 3) is not in the trail before it"),
        ({"change_base": lambda b: b.update(seq=2)}, "(seq 2) is not in the trail before it"),
        ({"change_base": lambda b: b.update(hash="0" * 64)}, "(seq 1) is not in the trail"),
        ({"change_look": lambda look: look["numbers"].append(1)}, "does not fit its full record"),
        ({"change_look": lambda look: look["texts"].append([0, 1])}, "a text is not"),
        ({"change_look": lambda look: look.update(ts=1)}, "a look's time is not a text"),
    ],
    ids=["later", "itself", "another look", "another hash", "one more", "bad text", "bad time"],
)
def test_a_looks_record_without_its_full_record_is_named(
    trail_path: Path, change: dict[str, Callable[[dict[str, Any]], None]], says: str
) -> None:
    # A writer's bug, not tampering (the MACs hold): its decisions cannot be read
    result = verify(_with_looks(trail_path, **change))
    bad = result.first_bad
    assert bad is not None
    assert (bad.code, bad.line, result.records) == ("invalid", 3, 2)
    assert "is a looks record" in bad.reason
    assert says in bad.reason
