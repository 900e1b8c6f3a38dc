"""The audit keys: outside the trail, found from the environment, made safely on first use,
refused when anything about them is unsafe, and never made by a reader."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import textwrap
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from swiftdeploy.audit.keys import CONFIG_ENV, KeyStore, config_dir
from swiftdeploy.audit.log import AuditLog
from swiftdeploy.audit.verify import verify
from swiftdeploy.errors import AuditError


def mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def test_where_the_keys_live() -> None:
    home = {"HOME": "/home/ann"}
    assert config_dir(home) == Path("/home/ann/.config/swiftdeploy")
    assert config_dir({**home, "XDG_CONFIG_HOME": "/xdg"}) == Path("/xdg/swiftdeploy")
    # The XDG spec: a relative XDG_CONFIG_HOME is invalid and ignored.
    assert config_dir({**home, "XDG_CONFIG_HOME": "rel"}) == Path("/home/ann/.config/swiftdeploy")
    chosen = {**home, "XDG_CONFIG_HOME": "/xdg", CONFIG_ENV: "/keys"}
    assert config_dir(chosen) == Path("/keys")
    with pytest.raises(AuditError, match="must be an absolute path"):
        config_dir({CONFIG_ENV: "relative/keys"})


def test_the_key_is_made_on_first_append_outside_the_trail(
    trail_path: Path, audit_keys: Path
) -> None:
    old = os.umask(0)
    try:
        AuditLog(trail_path, 1_000_000, []).append("command")
    finally:
        os.umask(old)
    key = audit_keys / "audit.key"
    assert mode(audit_keys) == 0o700
    assert mode(key) == 0o600
    assert len(bytes.fromhex(key.read_text().strip())) == 32
    assert not audit_keys.is_relative_to(trail_path.parent)
    assert key.read_text().strip() not in "".join(
        p.read_text() for p in trail_path.parent.iterdir()
    )
    assert sorted(p.name for p in audit_keys.iterdir()) == ["audit.key"]  # no temporary left


def test_a_reader_makes_no_key(trail_path: Path, audit_keys: Path) -> None:
    assert verify(trail_path).ok  # no trail
    assert not audit_keys.exists()
    AuditLog(trail_path, 1_000_000, []).append("command")
    (audit_keys / "audit.key").unlink()

    result = verify(trail_path)
    assert not (audit_keys / "audit.key").exists()
    problem = result.seal_problem
    assert problem is not None
    assert problem.code == "no_key"
    assert "does not exist" in problem.reason
    assert CONFIG_ENV in problem.reason
    assert result.summary().startswith("the audit trail cannot be checked without its key")


def test_another_key_is_told_apart_from_forgery(trail_path: Path, audit_keys: Path) -> None:
    AuditLog(trail_path, 1_000_000, []).append("command")
    (audit_keys / "audit.key").write_text("ab" * 32 + "\n")

    result = verify(trail_path)
    assert result.first_bad is not None
    assert "or with another key" in result.first_bad.reason
    with pytest.raises(AuditError, match="sealed with another audit key"):
        AuditLog(trail_path, 1_000_000, []).append("command")


def test_a_planted_symlink_for_the_directory_is_refused(
    trail_path: Path, audit_keys: Path, tmp_path: Path
) -> None:
    elsewhere = tmp_path / "attacker"
    elsewhere.mkdir()
    audit_keys.parent.mkdir(parents=True, exist_ok=True)
    audit_keys.symlink_to(elsewhere)

    with pytest.raises(AuditError, match="is a symbolic link or not a directory"):
        AuditLog(trail_path, 1_000_000, []).append("command")
    assert list(elsewhere.iterdir()) == []  # nothing was written through it
    assert not trail_path.exists()


def test_a_planted_symlink_for_the_key_is_refused(
    trail_path: Path, audit_keys: Path, tmp_path: Path
) -> None:
    known = tmp_path / "known.key"
    known.write_text("00" * 32 + "\n")
    known.chmod(0o600)
    audit_keys.mkdir(parents=True, mode=0o700)
    (audit_keys / "audit.key").symlink_to(known)
    with pytest.raises(AuditError, match="is a symbolic link"):
        AuditLog(trail_path, 1_000_000, []).append("command")


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        (lambda d: (d / "audit.key").chmod(0o644), "has mode 0644; it must be 0600"),
        (lambda d: d.chmod(0o777), "others could replace the keys in it"),
        (lambda d: (d / "audit.key").write_text("not a key\n"), "is not an audit key"),
        (lambda d: ((d / "audit.key").unlink(), os.mkfifo(d / "audit.key")), "not a regular file"),
        (lambda d: os.chown(d / "audit.key", 65534, 65534), "belongs to uid 65534"),
    ],
    ids=["readable by others", "writable directory", "not a key", "a fifo", "another owner"],
)
def test_an_unsafe_key_is_refused(
    trail_path: Path, audit_keys: Path, setup: object, message: str
) -> None:
    AuditLog(trail_path, 1_000_000, []).append("command")
    before = trail_path.read_bytes()
    setup(audit_keys)  # type: ignore[operator]

    with pytest.raises(AuditError, match=message):
        AuditLog(trail_path, 1_000_000, []).append("command")
    assert trail_path.read_bytes() == before
    problem = verify(trail_path).seal_problem
    assert problem is not None
    assert (problem.code, message in problem.reason) == ("no_key", True)


def test_many_first_uses_at_once_agree_on_one_key(audit_keys: Path) -> None:
    store = KeyStore(audit_keys)
    with ThreadPoolExecutor(max_workers=8) as pool:
        keys = list(pool.map(lambda _: store.record_key(), range(32)))
    assert len({key.secret for key in keys}) == 1
    assert sorted(p.name for p in audit_keys.iterdir()) == ["audit.key"]


def test_processes_racing_for_the_first_key_share_one_chain(trail_path: Path) -> None:
    script = textwrap.dedent(
        f"""
        from pathlib import Path
        from swiftdeploy.audit.log import AuditLog
        log = AuditLog(Path({str(trail_path)!r}), 10**9, [])
        for i in range(20):
            log.append("command", i=i)
        """
    )
    trail_path.parent.mkdir(parents=True)
    procs = [subprocess.Popen([sys.executable, "-c", script]) for _ in range(4)]
    assert [proc.wait(timeout=60) for proc in procs] == [0] * 4
    result = verify(trail_path)
    assert result.ok, result.lines()
    assert result.records == 80


def test_the_key_never_reaches_the_trail_or_the_result(trail_path: Path, audit_keys: Path) -> None:
    AuditLog(trail_path, 1_000_000, []).append("command")
    secret = (audit_keys / "audit.key").read_text().strip()
    assert secret not in json.dumps(verify(trail_path).to_dict())
    assert secret not in repr(KeyStore(audit_keys).record_key())
