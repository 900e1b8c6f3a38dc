"""Private directories and atomic writes for state that must never be half-written."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

from swiftdeploy.errors import StateError


def private_dir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    path.chmod(0o700)
    return path


def atomic_write(path: Path, text: str, mode: int = 0o600) -> None:
    """Write to a temporary file in the same directory, fsync, rename over, then fsync
    the directory so the rename itself survives a power cut. On any OS error (a full
    disk, a read-only filesystem) the old file is untouched and no temporary is left."""
    tmp: str | None = None
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
        tmp = None
        _fsync_dir(path.parent)
    except OSError as exc:
        raise StateError(
            f"could not write {path}: {exc.strerror or exc}",
            hint="free space (or fix permissions) on that filesystem and re-run; "
            "the previous version of the file is intact",
        ) from exc
    finally:
        if tmp is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
