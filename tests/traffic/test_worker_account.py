"""The account nginx's workers run as under root: created when missing, never shared, and
a failure to create it is one line that says how to fix it (never a fallback to a shared
account). A stand-in `useradd` on PATH plays the system's; nothing here changes the
machine's accounts. The account itself, end to end: tests/security/test_nginx_workers.py."""

from __future__ import annotations

import os
import pwd
from pathlib import Path

import pytest
from bench.support.project import Project

from swiftdeploy.errors import TrafficError
from swiftdeploy.manifest import load_manifest
from swiftdeploy.traffic import nginx, worker_account
from swiftdeploy.traffic.worker_account import TEMP_ROOT, WorkerAccount, ensure_worker_account

MISSING = "sd-no-such-account"


def fake_useradd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, stderr: str) -> Path:
    """A `useradd` first on PATH that fails with `stderr` and counts its calls."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "calls"
    script = bin_dir / "useradd"
    script.write_text(f"#!/bin/sh\necho x >> {calls}\necho '{stderr}' >&2\nexit 1\n")
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    return calls


def test_an_account_that_cannot_be_created_is_one_line_with_the_fix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given no account and a useradd that cannot write /etc/passwd
    monkeypatch.setattr(worker_account, "WORKER_USER", MISSING)
    fake_useradd(tmp_path, monkeypatch, "useradd: cannot open /etc/passwd")
    # When the workers' account is asked for
    with pytest.raises(TrafficError) as caught:
        ensure_worker_account()
    # Then the error says what failed, why, and the command to run instead
    line = caught.value.one_line()
    assert "\n" not in line
    assert f"cannot create the system account {MISSING}" in line
    assert "useradd: cannot open /etc/passwd" in line
    assert "useradd --system --user-group --no-create-home --home-dir /nonexistent" in line
    assert "or run swiftdeploy as a non-root user" in line


def test_no_useradd_is_one_line_too(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(worker_account, "WORKER_USER", MISSING)
    monkeypatch.setattr(worker_account, "SBIN_PATH", str(tmp_path))
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(TrafficError, match="useradd is not installed"):
        ensure_worker_account()


def test_a_locked_passwd_file_is_tried_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Another CLI (or an admin's tool) holds /etc/passwd's lock the whole time
    monkeypatch.setattr(worker_account, "WORKER_USER", MISSING)
    monkeypatch.setattr(worker_account, "CREATE_RETRY_S", 0.0)
    locked = "useradd: cannot lock /etc/passwd; try again later."
    calls = fake_useradd(tmp_path, monkeypatch, locked)
    with pytest.raises(TrafficError, match="try again later"):
        ensure_worker_account()
    assert len(calls.read_text().splitlines()) == worker_account.CREATE_ATTEMPTS


def test_an_account_another_cli_created_meanwhile_is_used(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Two CLIs start at once: this one's useradd loses, the account is there all the same
    # (`nobody` plays the account the other CLI made)
    monkeypatch.setattr(worker_account, "WORKER_USER", "nobody")
    fake_useradd(tmp_path, monkeypatch, "useradd: user 'nobody' already exists")
    assert worker_account._create().pw_name == "nobody"


@pytest.mark.parametrize(("uid", "shared_with"), [(33, "www-data"), (0, "root")])
def test_an_account_that_is_not_the_workers_alone_is_refused(uid: int, shared_with: str) -> None:
    entry = pwd.struct_passwd(
        (worker_account.WORKER_USER, "x", uid, uid, "", "/nonexistent", "/usr/sbin/nologin")
    )
    with pytest.raises(TrafficError) as caught:
        worker_account._refuse_shared(entry)
    line = caught.value.one_line()
    assert f"is shared with {shared_with}" in line
    assert "nothing else uses" in line


def test_the_config_names_the_account_only_under_root(
    project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    router = nginx.NginxRouter(load_manifest(project.manifest).manifest, project.state_dir)
    account = WorkerAccount("swiftdeploy-nginx", "swiftdeploy-nginx", 999, 999, TEMP_ROOT)
    monkeypatch.setattr(nginx, "ensure_worker_account", lambda: account)
    try:
        monkeypatch.setattr(nginx.os, "geteuid", lambda: 0)
        as_root = router.render()
        monkeypatch.setattr(nginx.os, "geteuid", lambda: 1000)
        as_user = router.render()
    finally:
        router.close()
    assert "\nuser swiftdeploy-nginx swiftdeploy-nginx;\n" in as_root
    assert f'client_body_temp_path "{TEMP_ROOT}/body";' in as_root
    assert "forbid_tracing()" in as_root
    assert "\nuser " not in as_user
    assert f'client_body_temp_path "{project.state_dir}/nginx/tmp/body";' in as_user
    assert "forbid_tracing()" not in as_user
