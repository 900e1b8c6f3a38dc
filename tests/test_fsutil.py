"""Atomic writes on a filesystem that fills up: the old file survives, nothing is left
half-written, and the CLI says so in one line (exit 1) instead of crashing."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from swiftdeploy.errors import StateError
from swiftdeploy.fsutil import atomic_write
from swiftdeploy.state import FileStateStore, State

SWIFTDEPLOY = str(Path(sys.executable).with_name("swiftdeploy"))


@pytest.fixture
def small_disk(short_tmp: Path) -> Iterator[Path]:
    """A 64 KiB tmpfs: a real filesystem that really runs out of space (the suite runs
    as root, as the README's setup does)."""
    mount = short_tmp / "disk"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=True)


def _fill(disk: Path) -> None:
    fd = os.open(disk / "ballast", os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        while True:
            os.write(fd, b"\0" * 4096)
    except OSError as exc:
        if exc.errno != errno.ENOSPC:
            raise
    finally:
        os.close(fd)


def test_a_full_disk_leaves_the_previous_file_and_no_temporary(small_disk: Path) -> None:
    target = small_disk / "state.json"
    atomic_write(target, "previous\n")
    _fill(small_disk)
    with pytest.raises(StateError, match="No space left on device") as caught:
        atomic_write(target, "x" * 200_000)
    assert "\n" not in caught.value.one_line()
    assert target.read_text() == "previous\n"
    assert sorted(p.name for p in small_disk.iterdir()) == ["ballast", "state.json"]


def test_saving_state_on_a_full_disk_is_a_state_error(small_disk: Path) -> None:
    store = FileStateStore(small_disk / ".swiftdeploy")
    store.save(State())
    before = store.path.read_text()
    _fill(small_disk)
    with pytest.raises(StateError, match="could not write"):
        store.save(State(message="y" * 100_000))
    assert store.path.read_text() == before


def test_init_on_a_full_disk_is_one_line_with_exit_1(small_disk: Path, short_tmp: Path) -> None:
    _fill(small_disk)
    env = {**os.environ, "TMPDIR": str(short_tmp)}
    result = subprocess.run(
        [SWIFTDEPLOY, "init", str(small_disk)],
        check=False,
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1, result.stderr
    assert "No space left on device" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert not list(short_tmp.glob("swiftdeploy-crash-*")), "a full disk is not a crash"
    assert not (small_disk / "swiftdeploy.yaml").exists(), "nothing half-written"
