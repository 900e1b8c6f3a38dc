"""The account nginx's workers run as when the CLI is root: `swiftdeploy-nginx`, a system
account made for them alone (no home, no login shell), created here the first time a
root CLI renders nginx's config.

Why not Debian's `www-data`: the kernel lets a process open another's /proc/PID/mem and
maps when both run as the same uid and the target is dumpable, and nginx makes its
workers dumpable again after it drops root. Any other program running as `www-data` (a
PHP or CGI app, the distribution's own nginx) could then rewrite the upstream addresses
in a worker's memory, taking over the public traffic, and read the cookie key. Nothing
but nginx's workers runs as this account, and the router's lua also makes each worker
undumpable (`forbid_tracing`), so not even another project's worker can open one.

The workers' temporary files (a request body that does not fit in memory) go to
TEMP_ROOT, not the project's state directory, which they cannot enter: root-owned, group
the account, 0750, with one 0700 directory per kind owned by the account. The account
cannot rename or replace those directories, so nginx's master (root), which creates and
chowns them at every start, never follows a link it planted.
"""

from __future__ import annotations

import grp
import os
import pwd
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from swiftdeploy import proc
from swiftdeploy.errors import TrafficError

WORKER_USER = "swiftdeploy-nginx"
TEMP_ROOT = Path("/var/lib/swiftdeploy-nginx")
TEMP_KINDS = ("body", "proxy", "fastcgi", "uwsgi", "scgi")
SBIN_PATH = "/usr/sbin:/sbin:/usr/bin:/bin"
NOLOGIN_SHELLS = ("/usr/sbin/nologin", "/sbin/nologin", "/bin/false")
# Two root CLIs that start at once both run useradd; the loser waits for the lock.
CREATE_ATTEMPTS = 10
CREATE_RETRY_S = 0.5


@dataclass(frozen=True)
class WorkerAccount:
    user: str
    group: str
    uid: int
    gid: int
    temp_root: Path


def ensure_worker_account() -> WorkerAccount:
    """The workers' account and temporary directories, created if missing (idempotent).

    Raises TrafficError, in one line with the fix, when the account cannot be created or
    is not the workers' alone; never falls back to a shared account."""
    entry = _lookup() or _create()
    _refuse_shared(entry)
    account = WorkerAccount(
        user=entry.pw_name,
        group=_group_name(entry.pw_gid),
        uid=entry.pw_uid,
        gid=entry.pw_gid,
        temp_root=TEMP_ROOT,
    )
    _ensure_temp_dirs(account)
    return account


def useradd_argv(useradd: str = "useradd") -> list[str]:
    """How the account is created; printed in the error when creating it fails."""
    shell = next((s for s in NOLOGIN_SHELLS if os.path.exists(s)), NOLOGIN_SHELLS[0])
    group = ["--gid", WORKER_USER] if _group_exists(WORKER_USER) else ["--user-group"]
    return [
        useradd,
        "--system",
        *group,
        "--no-create-home",
        "--home-dir",
        "/nonexistent",
        "--shell",
        shell,
        "--comment",
        "SwiftDeploy nginx workers",
        WORKER_USER,
    ]


def _lookup() -> pwd.struct_passwd | None:
    try:
        return pwd.getpwnam(WORKER_USER)
    except KeyError:
        return None


def _create() -> pwd.struct_passwd:
    useradd = shutil.which("useradd") or shutil.which("useradd", path=SBIN_PATH)
    if useradd is None:
        raise _cannot_create("useradd is not installed (Debian: apt-get install passwd)")
    detail = ""
    for _ in range(CREATE_ATTEMPTS):
        outcome = proc.run(useradd_argv(useradd), timeout=30, error=TrafficError)
        entry = _lookup()  # made by us, or by another CLI at the same moment
        if entry is not None:
            return entry
        lines = (outcome.stderr or outcome.stdout).strip().splitlines()
        detail = lines[-1] if lines else f"useradd exited {outcome.code}"
        if "try again" not in detail:  # "cannot lock /etc/passwd; try again later."
            break
        time.sleep(CREATE_RETRY_S)
    raise _cannot_create(detail)


def _cannot_create(detail: str) -> TrafficError:
    command = " ".join(useradd_argv())
    return TrafficError(
        f"cannot create the system account {WORKER_USER} that nginx's workers run as "
        f"when swiftdeploy runs as root: {detail}",
        hint=f"create it as root with `{command}`, or run swiftdeploy as a non-root user",
    )


def _refuse_shared(entry: pwd.struct_passwd) -> None:
    """The account exists: it must be a uid nothing else has, and not root's."""
    others = sorted(
        p.pw_name for p in pwd.getpwall() if p.pw_uid == entry.pw_uid and p.pw_name != WORKER_USER
    )
    if entry.pw_uid == 0 or entry.pw_gid == 0 or others:
        shared = ", ".join(others) if others else "root"
        raise TrafficError(
            f"the account {WORKER_USER} (uid {entry.pw_uid}, gid {entry.pw_gid}) is shared "
            f"with {shared}; nginx's workers must run as an account nothing else uses",
            hint=f"delete it as root (`userdel {WORKER_USER}`) and swiftdeploy creates "
            "its own, or give it a uid and group of its own",
        )


def _group_exists(name: str) -> bool:
    try:
        grp.getgrnam(name)
    except KeyError:
        return False
    return True


def _group_name(gid: int) -> str:
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        raise TrafficError(
            f"the account {WORKER_USER}'s group {gid} does not exist",
            hint=f"delete the account as root (`userdel {WORKER_USER}`) and swiftdeploy "
            "creates it again",
        ) from None


def _ensure_temp_dirs(account: WorkerAccount) -> None:
    try:
        account.temp_root.mkdir(mode=0o750, parents=True, exist_ok=True)
        _own(account.temp_root, 0, account.gid, 0o750)
        for kind in TEMP_KINDS:
            path = account.temp_root / kind
            path.mkdir(mode=0o700, exist_ok=True)
            _own(path, account.uid, account.gid, 0o700)
    except OSError as exc:
        raise TrafficError(
            f"cannot prepare {account.temp_root}, the temporary directory of nginx's "
            f"workers: {exc.strerror or exc}",
            hint=f"make it a directory owned by root, group {account.group}, mode 0750",
        ) from None


def _own(path: Path, uid: int, gid: int, mode: int) -> None:
    """Owner and mode of a directory itself, never of what a link there points to."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    try:
        os.fchown(fd, uid, gid)
        os.fchmod(fd, mode)
    finally:
        os.close(fd)
