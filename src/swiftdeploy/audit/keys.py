"""The audit keys, kept outside the trail: in the user's config directory, never the project.

`$SWIFTDEPLOY_CONFIG_HOME` (an absolute path) when set, else
`$XDG_CONFIG_HOME/swiftdeploy`, else `~/.config/swiftdeploy`, holds:

* `audit.key`: 32 random bytes (hex), the HMAC-SHA256 key that MACs every record and
  the trail's head file. Whoever can read it (this user, root) can forge records and
  heads that verify; whoever cannot, cannot. Lose it, and no trail it MAC'd verifies.
* `audit-signing.key`: an ed25519 private key (PKCS#8 PEM) that signs checkpoints
  (`swiftdeploy audit checkpoint`), whose public half travels inside each checkpoint.

Both are made on first use. The directory is created 0700 and opened without
following a symbolic link at its last component, so a link planted there is refused
rather than followed; it must belong to this user and be writable by no one else. A
key is written to a fresh 0600 file (O_EXCL, O_NOFOLLOW) and linked into place with
link(2), which never replaces an existing file: two processes creating the key at
once end up with the same one. A key file that is not a regular file, belongs to
someone else or can be read by group or others is refused, as ssh refuses such keys.
"""

from __future__ import annotations

import errno
import hashlib
import hmac
import os
import secrets
import stat
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from swiftdeploy.errors import AuditError

CONFIG_ENV = "SWIFTDEPLOY_CONFIG_HOME"
RECORD_KEY_FILE = "audit.key"
SIGNING_KEY_FILE = "audit-signing.key"
KEY_BYTES = 32
_MAX_KEY_FILE = 4096
# Each MAC says what it is for, so a record's MAC can never pass as a head's.
_RECORD_PURPOSE = b"swiftdeploy audit record v1\n"
_HEAD_PURPOSE = b"swiftdeploy audit head v1\n"
_KEY_ID_PURPOSE = b"swiftdeploy audit key id v1\n"


def config_dir(environ: Mapping[str, str] | None = None) -> Path:
    """Where the audit keys live (see the module docstring)."""
    env = os.environ if environ is None else environ
    explicit = env.get(CONFIG_ENV)
    if explicit:
        path = Path(explicit)
        if not path.is_absolute():
            raise AuditError(f"{CONFIG_ENV}={explicit!r} must be an absolute path")
        return path
    xdg = env.get("XDG_CONFIG_HOME")
    # The XDG spec says a relative XDG_CONFIG_HOME is invalid and must be ignored.
    if xdg and Path(xdg).is_absolute():
        return Path(xdg) / "swiftdeploy"
    # Without HOME, the passwd entry; without that either, "~" comes back unexpanded.
    home = Path(env.get("HOME") or os.path.expanduser("~"))
    if not home.is_absolute():
        raise AuditError(
            "cannot find the home directory for the audit keys",
            hint=f"set {CONFIG_ENV} to a private directory",
        )
    return home / ".config" / "swiftdeploy"


@dataclass(frozen=True)
class RecordKey:
    """The HMAC key of the trail's records and head."""

    secret: bytes = field(repr=False)

    def _mac(self, purpose: bytes, message: bytes) -> str:
        return hmac.new(self.secret, purpose + message, hashlib.sha256).hexdigest()

    @property
    def key_id(self) -> str:
        """A name for the key that reveals nothing of it: tells "another key" from "forged"."""
        return self._mac(_KEY_ID_PURPOSE, b"")[:16]

    def record_mac(self, record_hash: str) -> str:
        # The hash covers every field but itself and the MAC, so this covers the record.
        return self._mac(_RECORD_PURPOSE, record_hash.encode("ascii"))

    def head_mac(self, body: bytes) -> str:
        return self._mac(_HEAD_PURPOSE, body)

    def record_mac_ok(self, record_hash: str, mac: str) -> bool:
        return hmac.compare_digest(self.record_mac(record_hash), mac)

    def head_mac_ok(self, body: bytes, mac: str) -> bool:
        return hmac.compare_digest(self.head_mac(body), mac)


class KeyStore:
    """The audit keys in one directory; reads refuse anything unsafe, with the reason."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    @classmethod
    def from_environment(cls) -> KeyStore:
        return cls(config_dir())

    @property
    def record_key_path(self) -> Path:
        return self.directory / RECORD_KEY_FILE

    @property
    def signing_key_path(self) -> Path:
        return self.directory / SIGNING_KEY_FILE

    def record_key(self) -> RecordKey:
        """The HMAC key, made on first use."""
        key = self._record_key(lambda: secrets.token_hex(KEY_BYTES) + "\n")
        if key is None:  # only a concurrent `rm` between creating and reading it
            raise self._error(self.record_key_path, "vanished as it was created")
        return key

    def existing_record_key(self) -> RecordKey | None:
        """The HMAC key, or None when there is none (readers never make one)."""
        return self._record_key(None)

    def read(self, name: str, make: Callable[[], str] | None) -> bytes | None:
        """The bytes of key file `name`, made with `make()` first when it is missing and
        `make` is given; None when it is missing and `make` is None."""
        dir_fd = self._open_dir(create=make is not None)
        if dir_fd is None:
            return None
        try:
            data = self._read_key(dir_fd, name)
            if data is None and make is not None:
                self._create(dir_fd, name, make().encode("ascii"))
                data = self._read_key(dir_fd, name)
            return data
        finally:
            os.close(dir_fd)

    def _record_key(self, make: Callable[[], str] | None) -> RecordKey | None:
        data = self.read(RECORD_KEY_FILE, make)
        if data is None:
            return None
        text = data.decode("ascii", "replace").strip()
        if len(text) != 2 * KEY_BYTES or any(c not in "0123456789abcdef" for c in text):
            raise AuditError(
                f"{self.record_key_path} is not an audit key ({2 * KEY_BYTES} hex digits)"
            )
        return RecordKey(bytes.fromhex(text))

    # -- the directory

    def _open_dir(self, create: bool) -> int | None:
        if create:
            try:
                self.directory.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
                os.mkdir(self.directory, 0o700)
            except FileExistsError:
                pass  # already there; what it is gets checked below
            except OSError as exc:
                raise self._error(self.directory, f"cannot be created: {exc.strerror}") from exc
        flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
        try:
            fd = os.open(self.directory, flags)
        except FileNotFoundError:
            return None
        except OSError as exc:
            if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                raise self._error(self.directory, "is a symbolic link or not a directory") from exc
            raise self._error(self.directory, f"cannot be opened: {exc.strerror}") from exc
        info = os.fstat(fd)
        problem = _owner_problem(info) or (
            f"has mode {stat.S_IMODE(info.st_mode):04o}: others could replace the keys in it"
            if info.st_mode & 0o022
            else None
        )
        if problem:
            os.close(fd)
            raise self._error(self.directory, problem)
        return fd

    # -- one key file

    def _read_key(self, dir_fd: int, name: str) -> bytes | None:
        path = self.directory / name
        # O_NONBLOCK: a FIFO planted as the key must not hang us before fstat refuses it.
        flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
        try:
            fd = os.open(name, flags, dir_fd=dir_fd)
        except FileNotFoundError:
            return None
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise self._error(path, "is a symbolic link") from exc
            raise self._error(path, f"cannot be read: {exc.strerror}") from exc
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):
                raise self._error(path, "is not a regular file")
            problem = _owner_problem(info)
            if problem:
                raise self._error(path, problem)
            if info.st_mode & 0o077:
                raise AuditError(
                    f"the audit key {path} has mode {stat.S_IMODE(info.st_mode):04o}; "
                    "it must be 0600",
                    hint="chmod 600 it; anyone who read it can forge the audit trail",
                )
            data = os.read(fd, _MAX_KEY_FILE + 1)
        finally:
            os.close(fd)
        if not data or len(data) > _MAX_KEY_FILE:
            raise self._error(path, "is empty or too large to be a key")
        return data

    def _create(self, dir_fd: int, name: str, data: bytes) -> None:
        temporary = f".{name}.{secrets.token_hex(8)}.tmp"
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        try:
            fd = os.open(temporary, flags, 0o600, dir_fd=dir_fd)
            try:
                if os.write(fd, data) != len(data):
                    raise OSError(errno.ENOSPC, "short write")
                os.fsync(fd)
            finally:
                os.close(fd)
            try:
                # link(2) never replaces an existing file: the first key made stays.
                os.link(
                    temporary, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd, follow_symlinks=False
                )
            except FileExistsError:
                pass  # another process made it first; its key is the key
            finally:
                os.unlink(temporary, dir_fd=dir_fd)
            os.fsync(dir_fd)
        except OSError as exc:
            raise self._error(
                self.directory / name, f"cannot be created: {exc.strerror or exc}"
            ) from exc

    def missing_reason(self) -> str:
        """Why there is no record key, for `verify`'s report (readers never make one)."""
        return (
            f"{self.record_key_path} does not exist, so the records' MACs and the head "
            "file cannot be checked: verify as the user, on the machine, that wrote the "
            f"trail (or point {CONFIG_ENV} at its keys)"
        )

    @staticmethod
    def _error(path: Path, problem: str) -> AuditError:
        return AuditError(
            f"the audit key location {path} {problem}",
            hint=f"fix it, or set {CONFIG_ENV} to a private directory of your own",
        )


def _owner_problem(info: os.stat_result) -> str | None:
    if info.st_uid != os.geteuid():
        return f"belongs to uid {info.st_uid}, not to you (uid {os.geteuid()})"
    return None


class MemoryKeyStore(KeyStore):
    """Keys held in memory, never made here: a trail whose keys live elsewhere (the
    cluster's Secret, `swiftdeploy.runtime.kubernetes.trail`). `files` maps the key
    file names above to their bytes; `where` says where they came from, `missing`
    why there is no record key."""

    def __init__(self, files: Mapping[str, bytes], where: str, missing: str) -> None:
        super().__init__(Path(where))
        self.files = dict(files)
        self.missing = missing

    def read(self, name: str, make: Callable[[], str] | None) -> bytes | None:
        return self.files.get(name)

    def missing_reason(self) -> str:
        return self.missing
