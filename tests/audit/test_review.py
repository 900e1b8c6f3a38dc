"""The security review's reproductions: each once left `audit verify` saying ok (or
crashing), and must now be found, with what happened and where.

1. the last records removed;  2. the whole trail deleted (the next append used to start
a fresh, valid chain);  3. every record rewritten with recomputed hashes;  4. a
duplicate key that the hash of the parsed object did not see;  and NaN, or deep
nesting, in a record, which crashed verify (and append, in the last record).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from swiftdeploy.audit.head import head_path
from swiftdeploy.audit.log import GENESIS_HASH, AuditLog
from swiftdeploy.audit.verify import verify
from swiftdeploy.errors import AuditError
from tests.support.trails import trail_lines, write_lines, write_trail

N = 12


@pytest.fixture
def trail(trail_path: Path) -> Path:
    return write_trail(trail_path, N, rollout_id="r-1")


lines = trail_lines
write = write_lines


def canonical(record: dict[str, Any]) -> str:
    return json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def sha256(record: dict[str, Any]) -> str:
    body = {k: v for k, v in record.items() if k not in ("hash", "mac")}
    return hashlib.sha256(canonical(body).encode()).hexdigest()


def rewrite_everything(
    path: Path, change: dict[str, Any], *, keep_macs: bool, start: int = 0
) -> None:
    """What someone without the key can do to the whole trail (from line `start` on):
    change every record and recompute every hash and prev_hash, so that the chain is
    valid again."""
    text = lines(path)
    previous = json.loads(text[start - 1])["hash"] if start else GENESIS_HASH
    out = text[:start]
    for line in text[start:]:
        record = {**json.loads(line), **change, "prev_hash": previous}
        if not keep_macs:
            del record["mac"]
        record["hash"] = previous = sha256(record)
        out.append(canonical(record))
    write(path, out)


def append_fails(path: Path, match: str) -> None:
    before = path.read_bytes() if path.exists() else None
    with pytest.raises(AuditError, match=match) as caught:
        AuditLog(path, 10_000_000, []).append("command", n="after")
    assert "swiftdeploy audit verify" in caught.value.one_line()
    assert (path.read_bytes() if path.exists() else None) == before


# --- 1. the last records removed -----------------------------------------------------------


def test_records_cut_off_the_end_are_found(trail: Path) -> None:
    write(trail, lines(trail)[:-3])

    result = verify(trail)
    assert not result.ok
    assert result.first_bad is None  # the chain alone is fine: this is what the head is for
    problem = result.seal_problem
    assert problem is not None
    assert problem.code == "cut"
    assert f"ends at record {N - 3}, but its head file names record {N}" in problem.reason
    assert "3 record(s) were cut from its end" in problem.reason
    assert result.summary().startswith("records were cut from the end of the audit trail")
    append_fails(trail, "were cut from its end")


def test_records_cut_across_rotated_files_are_found(trail_path: Path) -> None:
    """The head counts the whole chain: removing the current file and the newest rotated
    one leaves a valid chain that ends too early."""
    log = AuditLog(trail_path, 2048, [])
    for i in range(30):
        log.append("command", n=i, pad="x" * 150)
    rotated = sorted(trail_path.parent.glob("history.jsonl.*[0-9]"), key=lambda p: p.name)
    assert len(rotated) >= 3
    newest = max(rotated, key=lambda p: int(p.suffix[1:]))
    trail_path.unlink()
    newest.unlink()

    result = verify(trail_path)
    assert result.first_bad is None
    assert result.seal_problem is not None
    assert result.seal_problem.code == "cut"
    append_fails(trail_path, "were cut from its end")


# --- 2. the whole trail deleted ------------------------------------------------------------


def test_a_deleted_trail_is_found_and_not_started_afresh(trail: Path) -> None:
    trail.unlink()

    result = verify(trail)
    assert not result.ok
    problem = result.seal_problem
    assert problem is not None
    assert problem.code == "deleted"
    assert f"its head file says it held {N}" in problem.reason
    assert "move history.jsonl.head aside too" in problem.reason
    assert result.summary().startswith("the audit trail was deleted")
    append_fails(trail, "it was deleted")
    assert not trail.exists()  # no fresh chain was started


def test_a_trail_emptied_in_place_is_found(trail: Path) -> None:
    trail.write_bytes(b"")
    problem = verify(trail).seal_problem
    assert problem is not None
    assert problem.code == "cut"
    append_fails(trail, "it was deleted")


def test_a_deleted_head_file_is_found(trail: Path) -> None:
    write(trail, lines(trail)[:-1])
    head_path(trail).unlink()  # hiding the cut by removing what shows it

    result = verify(trail)
    problem = result.seal_problem
    assert problem is not None
    assert problem.code == "head_missing"
    assert "records could have been cut from its end" in problem.reason
    assert "swiftdeploy audit adopt" in problem.reason
    append_fails(trail, "no head file")


# --- 3. every record rewritten with recomputed hashes ---------------------------------------


def test_every_record_rewritten_with_recomputed_hashes_is_found(trail: Path) -> None:
    rewrite_everything(trail, {"rollout_id": "r-forged"}, keep_macs=True)

    result = verify(trail)
    bad = result.first_bad
    assert bad is not None
    assert (bad.code, bad.line) == ("forged", 1)
    assert "MAC does not match the audit key" in bad.reason
    assert result.records == 0
    append_fails(trail, "MAC does not match")


def test_every_record_rewritten_without_macs_is_found(trail: Path) -> None:
    """Dropping the MACs makes the records look like ones from before MACs; the head
    still names the last record's hash, which the rewrite changed."""
    rewrite_everything(trail, {"rollout_id": "r-forged"}, keep_macs=False)

    result = verify(trail)
    assert result.first_bad is None
    problem = result.seal_problem
    assert problem is not None
    assert (problem.code, problem.line) == ("head_mismatch", N)
    assert "the trail was rewritten up to here" in problem.reason
    append_fails(trail, "not the one its head file names")


def test_a_rewritten_head_file_is_found(trail: Path) -> None:
    """Cut the trail, then write a head that matches it: without the key, the MAC fails."""
    write(trail, lines(trail)[:-2])
    head = json.loads(head_path(trail).read_text())
    last = json.loads(lines(trail)[-1])
    head.update(count=last["seq"], hash=last["hash"])
    head_path(trail).write_text(canonical(head) + "\n")

    problem = verify(trail).seal_problem
    assert problem is not None
    assert problem.code == "head_invalid"
    assert "does not match its MAC" in problem.reason
    append_fails(trail, "does not match its MAC")


def test_records_after_an_anchor_rewritten_are_found(trail: Path) -> None:
    """--anchor used to catch a rewrite only up to the anchored record."""
    anchor = json.loads(lines(trail)[3])["hash"]
    rewrite_everything(trail, {"rollout_id": "r-forged"}, keep_macs=True, start=4)

    result = verify(trail, anchor=anchor)
    assert result.anchor_problem is None  # records 1-4 are untouched
    bad = result.first_bad
    assert bad is not None
    assert (bad.code, bad.line) == ("forged", 5)


# --- 4. a duplicate key --------------------------------------------------------------------


def test_a_duplicate_key_is_refused(trail: Path) -> None:
    """`{"n":"approved",...,"n":6}`: Python keeps the last value, so the hash of the parsed
    object matched; a reader that keeps the first would see "approved"."""
    text = lines(trail)
    text[6] = text[6].replace("{", '{"n":"approved by nobody",', 1)
    write(trail, text)

    bad = verify(trail).first_bad
    assert bad is not None
    assert (bad.code, bad.line) == ("invalid", 7)
    assert "has the key 'n' twice" in bad.reason


def test_a_line_that_is_not_in_canonical_form_is_refused(trail: Path) -> None:
    """Same parsed content, other bytes: a space, an escaped letter, another number."""
    for original, variant in (
        ('"n":4', '"n": 4'),
        ('"n":4', '"n":4.0'),
        ("command", "comm\\u0061nd"),
    ):
        text = lines(trail)
        text[4] = text[4].replace(original, variant, 1)
        write(trail, text)
        bad = verify(trail).first_bad
        assert bad is not None, variant
        assert (bad.code, bad.line) == ("invalid", 5), variant
        assert "not in canonical form" in bad.reason or "hash" in bad.reason


# --- NaN, Infinity and deep nesting ----------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("NaN", "holds NaN"),
        ("Infinity", "holds Infinity"),
        ("-Infinity", "holds -Infinity"),
        ("1e999", "too large for a float"),
        ("[" * 100_000 + "]" * 100_000, "nested too deeply"),
        ("[" * 70 + "]" * 70, "nested more than 64 levels deep"),
    ],
)
def test_nan_infinity_and_deep_nesting_are_problems_not_crashes(
    trail: Path, value: str, reason: str
) -> None:
    text = lines(trail)
    text[5] = text[5].replace('"n":5', f'"n":{value}')
    write(trail, text)
    bad = verify(trail).first_bad
    assert bad is not None
    assert (bad.code, bad.line) == ("invalid", 6)
    assert reason in bad.reason

    text[-1] = text[-1].replace(f'"n":{N - 1}', f'"n":{value}')
    write(trail, text)
    append_fails(trail, f"line {N}")
