"""Private directories and atomic writes for state that must never be half-written."""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import stat
from collections.abc import Iterator
from pathlib import Path

from swiftdeploy.errors import StateError

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC


class UnsafeDirError(Exception):
    """Why a directory is not one to write in; the message completes "DIR ...". The
    caller raises its own error with it."""


def private_dir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    path.chmod(0o700)
    return path


def atomic_write(path: Path, text: str, mode: int = 0o600) -> None:
    """Write to a temporary file in the same directory, fsync, rename over, then fsync
    the directory so the rename itself survives a power cut. On any OS error (a full
    disk, a read-only filesystem) the old file is untouched and no temporary is left."""
    try:
        dir_fd = os.open(path.parent, _DIR_FLAGS)
    except OSError as exc:
        raise _write_error(path, exc) from exc
    try:
        atomic_write_at(dir_fd, path.name, text, mode, shown=path)
    finally:
        os.close(dir_fd)


def atomic_write_at(
    dir_fd: int, name: str, text: str, mode: int = 0o600, *, shown: Path | None = None
) -> None:
    """atomic_write of `name` in the directory open at `dir_fd`: nothing on the way is
    looked up again, and the temporary is made fresh (O_EXCL, O_NOFOLLOW)."""
    tmp = f".{name}.{secrets.token_hex(6)}"
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        fd = os.open(tmp, flags, 0o600, dir_fd=dir_fd)
        renamed = False
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(text)
                handle.flush()
                os.fchmod(handle.fileno(), mode)  # exactly `mode`, whatever the umask
                os.fsync(handle.fileno())
            os.replace(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
            renamed = True
            os.fsync(dir_fd)
        finally:
            if not renamed:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(tmp, dir_fd=dir_fd)
    except OSError as exc:
        raise _write_error(shown or Path(name), exc) from exc


def _write_error(path: Path, exc: OSError) -> StateError:
    return StateError(
        f"could not write {path}: {exc.strerror or exc}",
        hint="free space (or fix permissions) on that filesystem and re-run; "
        "the previous version of the file is intact",
    )


def open_own_dir(name: str, *, dir_fd: int | None = None) -> int:
    """A descriptor of directory `name` (in `dir_fd`), made 0700 if missing: never
    through a symbolic link, and only if this user owns it. Write in it with
    atomic_write_at; raises UnsafeDirError, or OSError if it cannot be made or opened."""
    with contextlib.suppress(FileExistsError):  # what is there is checked below
        os.mkdir(name, 0o700, dir_fd=dir_fd)
    try:
        fd = os.open(name, _DIR_FLAGS | os.O_NOFOLLOW, dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            raise UnsafeDirError("is a symbolic link or not a directory") from exc
        raise
    owner = os.fstat(fd).st_uid
    if owner != os.geteuid():
        os.close(fd)
        raise UnsafeDirError(f"belongs to uid {owner}, not to you (uid {os.geteuid()})")
    return fd


@contextlib.contextmanager
def own_dir(path: Path) -> Iterator[int]:
    """open_own_dir of `path`, reached one component at a time from / (or the working
    directory): missing ones are made 0700, and a symbolic link on the way is followed
    only if root or this user owns it, as another user's link in /tmp would choose
    where we write. The descriptor is closed on leaving."""
    *parents, last = path.parts or (".",)
    fd = os.open("/" if path.is_absolute() else ".", _DIR_FLAGS)
    try:
        for part in parents[1:] if path.is_absolute() else parents:
            child = _step(fd, part)
            os.close(fd)
            fd = child
        if last == path.anchor:
            last = "."
        inner = open_own_dir(last, dir_fd=fd)
    finally:
        os.close(fd)
    try:
        yield inner
    finally:
        os.close(inner)


def _step(parent: int, part: str) -> int:
    """The directory `part` in `parent`, made if missing."""
    with contextlib.suppress(FileExistsError):
        os.mkdir(part, 0o700, dir_fd=parent)
    try:
        return os.open(part, _DIR_FLAGS | os.O_NOFOLLOW, dir_fd=parent)
    except OSError as exc:  # a link is ELOOP or, with O_DIRECTORY, ENOTDIR
        link = os.stat(part, dir_fd=parent, follow_symlinks=False)
        if exc.errno not in (errno.ELOOP, errno.ENOTDIR) or not stat.S_ISLNK(link.st_mode):
            raise
    if link.st_uid not in (0, os.geteuid()):
        raise UnsafeDirError(f"passes through {part!r}, a symbolic link of uid {link.st_uid}")
    return os.open(part, _DIR_FLAGS, dir_fd=parent)
