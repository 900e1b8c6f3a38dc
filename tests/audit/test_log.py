"""AuditLog.append: record shape, the hash chain, modes, secrets, rotation, failures."""

from __future__ import annotations

import errno
import hashlib
import hmac
import json
import os
import re
import stat
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path
from typing import Any

import pytest

from swiftdeploy.audit import log as audit_log
from swiftdeploy.audit.log import GENESIS_HASH, AuditLog
from swiftdeploy.audit.verify import verify
from swiftdeploy.errors import AuditError
from tests.support.trails import a_decision

TS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


def lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def expected_hash(record: dict[str, Any]) -> str:
    body = {k: v for k, v in record.items() if k not in ("hash", "mac")}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()


def expected_mac(audit_keys: Path, record: dict[str, Any]) -> str:
    """HMAC-SHA256 of the record's hash with the key in the config directory."""
    key = bytes.fromhex((audit_keys / "audit.key").read_text().strip())
    message = b"swiftdeploy audit record v1\n" + record["hash"].encode()
    return hmac.new(key, message, hashlib.sha256).hexdigest()


def test_records_carry_the_envelope_and_form_a_chain(trail_path: Path, audit_keys: Path) -> None:
    log = AuditLog(trail_path, 1_000_000, [], command=["swiftdeploy", "canary", "v2"])
    first = log.append("command", rollout_id="r-1")
    second = log.append("transition", rollout_id="r-1", phase_before="idle",
                        phase_after="progressing")  # fmt: skip
    third = log.append("decision", rollout_id="r-1", decision=a_decision())

    written = lines(trail_path)
    assert written == [first, second, third]
    for seq, record in enumerate(written, start=1):
        assert uuid.UUID(record["id"])
        assert TS.match(record["ts"]), record["ts"]
        assert record["actor"]["pid"] == os.getpid()
        assert record["actor"]["user"]
        assert record["actor"]["host"]
        assert record["command"] == ["swiftdeploy", "canary", "v2"]
        assert record["rollout_id"] == "r-1"
        assert record["seq"] == seq
        assert record["hash"] == expected_hash(record)
        assert record["mac"] == expected_mac(audit_keys, record)
    assert [r["kind"] for r in written] == ["command", "transition", "decision"]
    assert written[0]["prev_hash"] == GENESIS_HASH
    assert written[1]["prev_hash"] == written[0]["hash"]
    assert written[2]["prev_hash"] == written[1]["hash"]
    assert (second["phase_before"], second["phase_after"]) == ("idle", "progressing")
    assert set(third["decision"]) >= set(audit_log.DECISION_KEYS)
    # One canonical line per record: sorted keys, no spaces.
    raw = trail_path.read_text().splitlines()
    assert raw[0] == json.dumps(first, sort_keys=True, separators=(",", ":"))
    assert log.head() == third["hash"]


def test_the_log_refuses_records_it_cannot_vouch_for(trail_path: Path) -> None:
    log = AuditLog(trail_path, 1_000_000, [])
    with pytest.raises(ValueError, match="filled in by the log"):
        log.append("command", hash="0" * 64)
    with pytest.raises(ValueError, match="phase_after"):
        log.append("transition", phase_before="idle")
    with pytest.raises(ValueError, match="decision"):
        log.append("decision", decision={"engine": "opa"})
    with pytest.raises(ValueError, match="kind"):
        log.append("Not A Kind")
    assert not trail_path.exists()


def test_file_is_0600_and_a_new_directory_0700(tmp_path: Path) -> None:
    path = tmp_path / "new" / "deeper" / "history.jsonl"
    old = os.umask(0)
    try:
        AuditLog(path, 1_000_000, []).append("command")
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert stat.S_IMODE(path.with_name("history.jsonl.lock").stat().st_mode) == 0o600


def test_a_looser_existing_file_is_tightened(trail_path: Path) -> None:
    log = AuditLog(trail_path, 1_000_000, [])
    log.append("command")
    trail_path.chmod(0o644)
    log.append("command")
    assert stat.S_IMODE(trail_path.stat().st_mode) == 0o600


def test_secrets_are_never_written(trail_path: Path) -> None:
    secrets = ["hunter2-token-XYZ", 'p@ss"word', "987654321"]
    log = AuditLog(
        trail_path, 1_000_000, secrets, command=["swiftdeploy", "--token", "hunter2-token-XYZ"]
    )
    decision = a_decision()
    decision["input"] = {
        "env": {"DB_PASSWORD": 'p@ss"word', "hunter2-token-XYZ": "as a key"},
        "url": "https://user:hunter2-token-XYZ@db.example/x",
        "list": ["a", 'p@ss"wordp@ss"word', {"deep": ["987654321"]}],
        "pin": 987654321,
        "bigger": 19876543210,
    }
    log.append("decision", rollout_id="r-hunter2-token-XYZ", decision=decision)
    log.append("chaos", note="token=hunter2-token-XYZ;", track="canary")

    data = trail_path.read_bytes()
    for secret in secrets:
        assert secret.encode() not in data
        assert json.dumps(secret)[1:-1].encode() not in data  # nor its escaped form
    records = lines(trail_path)
    shown = records[0]["decision"]["input"]
    assert shown["env"] == {"DB_PASSWORD": "***", "***": "as a key"}
    assert shown["url"] == "https://user:***@db.example/x"
    assert shown["list"] == ["a", "******", {"deep": ["***"]}]
    assert shown["pin"] == "***"
    assert shown["bigger"] == "***"
    assert records[0]["command"] == ["swiftdeploy", "--token", "***"]
    assert records[0]["rollout_id"] == "r-***"
    assert records[1]["note"] == "token=***;"
    assert verify(trail_path).ok  # redaction happens before hashing


def test_values_are_made_plain_json(trail_path: Path) -> None:
    log = AuditLog(trail_path, 1_000_000, [])
    record = log.append(
        "other", path=Path("/x/y"), items=("a", 1), nan=float("nan"), when=None, flag=True
    )
    assert record["path"] == "/x/y"
    assert record["items"] == ["a", 1]
    assert record["nan"] is None
    with pytest.raises(TypeError, match="cannot record"):
        log.append("other", thing=object())


def test_rotation_keeps_one_chain_across_files(trail_path: Path) -> None:
    log = AuditLog(trail_path, 4096, [])
    for i in range(60):
        log.append("command", n=i, pad="x" * 200)

    files = sorted(trail_path.parent.glob("history.jsonl.*[0-9]"))
    assert len(files) >= 3, files
    ordered = [trail_path.with_name(f"history.jsonl.{n}") for n in range(1, len(files) + 1)]
    assert files == sorted(ordered)
    ordered.append(trail_path)
    previous_last: dict[str, Any] | None = None
    total = 0
    for file in ordered:
        assert file.stat().st_size <= 4096
        assert stat.S_IMODE(file.stat().st_mode) == 0o600
        records = lines(file)
        total += len(records)
        if previous_last is not None:
            assert records[0]["prev_hash"] == previous_last["hash"]
        previous_last = records[-1]
    assert total == 60

    result = verify(trail_path)
    assert result.ok, result.lines()
    assert result.records == 60
    assert len(result.files) == len(ordered)


def test_rotation_of_a_record_larger_than_max_bytes(trail_path: Path) -> None:
    log = AuditLog(trail_path, 1024, [])
    log.append("command", pad="x" * 100)
    log.append("command", pad="y" * 3000)  # larger than max_bytes on its own
    log.append("command", pad="z" * 100)
    assert verify(trail_path).ok
    assert verify(trail_path).records == 3


def test_a_lost_current_file_after_rotation_continues_the_chain(trail_path: Path) -> None:
    """A crash between the rename and the first write leaves only rotated files."""
    log = AuditLog(trail_path, 1_000_000, [])
    log.append("command")
    last = log.append("command")
    trail_path.rename(trail_path.with_name("history.jsonl.1"))
    record = log.append("command")
    assert record["prev_hash"] == last["hash"]
    assert verify(trail_path).ok


def truncate_last_line(path: Path, keep: int) -> int:
    """Cut the file inside its last line, keeping `keep` bytes of it; returns its offset."""
    data = path.read_bytes()
    start = data.rstrip(b"\n").rfind(b"\n") + 1
    path.write_bytes(data[: start + keep])
    return start


def test_a_torn_tail_stops_the_next_append(trail_path: Path) -> None:
    log = AuditLog(trail_path, 1_000_000, [])
    for i in range(5):
        log.append("command", n=i)
    offset = truncate_last_line(trail_path, 40)
    before = trail_path.read_bytes()

    with pytest.raises(AuditError) as caught:
        log.append("command", n=99)
    message = caught.value.one_line()
    assert "torn" in message
    assert "line 5" in message
    assert f"byte {offset}" in message
    assert "swiftdeploy audit verify" in message
    assert trail_path.read_bytes() == before  # neither dropped nor "fixed"


def test_an_altered_last_record_stops_the_next_append(trail_path: Path) -> None:
    log = AuditLog(trail_path, 1_000_000, [])
    log.append("command", n=1)
    log.append("command", n=2)
    trail_path.write_text(trail_path.read_text().replace('"n":2', '"n":3'))
    with pytest.raises(AuditError, match="changed after it was written"):
        log.append("command", n=4)


def test_a_failed_write_raises_and_leaves_no_trace(
    trail_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = AuditLog(trail_path, 1_000_000, [])
    log.append("command", n=1)
    before = trail_path.read_bytes()

    def disk_full(fd: int, data: bytes) -> int:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(audit_log.os, "write", disk_full)
    with pytest.raises(AuditError, match=r"cannot record transition .*No space left"):
        log.append("transition", phase_before="idle", phase_after="progressing")
    monkeypatch.undo()
    assert trail_path.read_bytes() == before
    log.append("command", n=2)
    assert verify(trail_path).records == 2


def test_a_short_write_is_cut_back(trail_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    log = AuditLog(trail_path, 1_000_000, [])
    log.append("command", n=1)
    before = trail_path.read_bytes()
    real_write = os.write

    def half(fd: int, data: bytes) -> int:
        return real_write(fd, data[: len(data) // 2])

    monkeypatch.setattr(audit_log.os, "write", half)
    with pytest.raises(AuditError, match="short write"):
        log.append("command", n=2)
    monkeypatch.undo()
    assert trail_path.read_bytes() == before
    assert verify(trail_path).ok


def test_the_kernel_refusing_the_write_is_reported(trail_path: Path) -> None:
    """A real short write: the file size limit (as on a full disk) stops the write."""
    log = AuditLog(trail_path, 1_000_000, [])
    log.append("command", n=1)
    before = trail_path.read_bytes()
    script = textwrap.dedent(
        f"""
        import resource, signal, sys
        from pathlib import Path
        from swiftdeploy.audit.log import AuditLog
        from swiftdeploy.errors import AuditError
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        limit = {len(before)} + 100
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
        try:
            AuditLog(Path({str(trail_path)!r}), 1_000_000, []).append("command", pad="x" * 5000)
        except AuditError as exc:
            print(exc.one_line())
            sys.exit(3)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 3, done.stderr
    assert "cannot record command" in done.stdout
    assert "the action was not taken" in done.stdout
    assert trail_path.read_bytes() == before
    assert verify(trail_path).ok


def test_an_unwritable_directory_is_an_audit_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    log = AuditLog(blocker / "history.jsonl", 1_000_000, [])
    with pytest.raises(AuditError):
        log.append("command")


def test_head_of_an_empty_trail_is_none(trail_path: Path) -> None:
    assert AuditLog(trail_path, 1_000_000, []).head() is None
