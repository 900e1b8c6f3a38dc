"""The head file: rewritten after every record, MAC'd, one record behind at most after a
crash between the two writes (a warning, caught up by the next append), and a record
whose head cannot be written is taken back."""

from __future__ import annotations

import errno
import hashlib
import hmac
import json
import os
import stat
from pathlib import Path

import pytest

from swiftdeploy.audit import log as audit_log
from swiftdeploy.audit.head import head_path
from swiftdeploy.audit.log import AuditLog
from swiftdeploy.audit.verify import verify
from swiftdeploy.errors import AuditError


def test_the_head_names_the_last_record_and_is_macd(trail_path: Path, audit_keys: Path) -> None:
    log = AuditLog(trail_path, 1_000_000, [])
    for i in range(3):
        last = log.append("command", n=i)
        head = json.loads(head_path(trail_path).read_text())
        assert (head["count"], head["hash"], head["ts"]) == (i + 1, last["hash"], last["ts"])

    assert head_path(trail_path).name == "history.jsonl.head"
    assert stat.S_IMODE(head_path(trail_path).stat().st_mode) == 0o600
    key = bytes.fromhex((audit_keys / "audit.key").read_text().strip())
    body = {k: v for k, v in head.items() if k != "mac"}
    message = (
        b"swiftdeploy audit head v1\n"
        + json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
    )
    assert head["mac"] == hmac.new(key, message, hashlib.sha256).hexdigest()
    assert head["format"] == "swiftdeploy-audit-head/v1"
    result = verify(trail_path)
    assert (result.ok, result.sealed_records) == (True, 3)
    assert "head file history.jsonl.head: 3 records, MAC checked" in result.lines()


def test_a_crash_between_a_record_and_its_head(trail_path: Path) -> None:
    """The record is durable, its head is not: the record's MAC vouches for it."""
    log = AuditLog(trail_path, 1_000_000, [])
    log.append("command", n=1)
    older = head_path(trail_path).read_bytes()
    log.append("command", n=2)
    head_path(trail_path).write_bytes(older)

    result = verify(trail_path)
    assert result.ok, result.lines()
    assert any("the head file is 1 record(s) behind the trail" in w for w in result.warnings)
    log.append("command", n=3)
    caught_up = verify(trail_path)
    assert caught_up.ok
    assert (caught_up.sealed_records, caught_up.warnings) == (3, ())


def test_a_record_after_the_head_without_a_mac_is_not_ours(trail_path: Path) -> None:
    log = AuditLog(trail_path, 1_000_000, [])
    log.append("command", n=1)
    older = head_path(trail_path).read_bytes()
    log.append("command", n=2)
    head_path(trail_path).write_bytes(older)
    lines = trail_path.read_text().splitlines()
    stripped = {k: v for k, v in json.loads(lines[1]).items() if k != "mac"}
    lines[1] = json.dumps(stripped, sort_keys=True, separators=(",", ":"))
    trail_path.write_text("\n".join(lines) + "\n")

    bad = verify(trail_path).first_bad
    assert bad is not None
    assert (bad.code, bad.line) == ("forged", 2)
    with pytest.raises(AuditError, match="without a MAC"):
        log.append("command", n=3)


def test_a_head_that_cannot_be_written_takes_the_record_back(
    trail_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = AuditLog(trail_path, 1_000_000, [])
    log.append("command", n=1)
    before = trail_path.read_bytes(), head_path(trail_path).read_bytes()

    def full_disk(*args: object, **kwargs: object) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(audit_log, "write_head", full_disk)
    with pytest.raises(AuditError, match=r"writing the audit trail's head .* No space left"):
        log.append("transition", phase_before="idle", phase_after="progressing")
    monkeypatch.undo()
    assert (trail_path.read_bytes(), head_path(trail_path).read_bytes()) == before
    assert verify(trail_path).ok
    assert log.append("command", n=2)["seq"] == 2


def test_a_head_that_cannot_be_written_after_a_rotation(
    trail_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = AuditLog(trail_path, 600, [])
    log.append("command", pad="x" * 300)

    def full_disk(*args: object, **kwargs: object) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(audit_log, "write_head", full_disk)
    with pytest.raises(AuditError, match="the action was not taken"):
        log.append("command", pad="y" * 300)
    monkeypatch.undo()
    result = verify(trail_path)
    assert result.ok, result.lines()
    assert result.records == 1
    assert log.append("command")["seq"] == 2
    assert verify(trail_path).ok
