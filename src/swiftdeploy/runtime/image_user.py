"""Which uid a container image runs as, and who else on this machine has it.

Without user-namespace remapping, a container's uid is the host's. A host account of the
same uid, or one whose subordinate uid range (/etc/subuid) holds it, as its rootless
containers run as those, can signal a replica and, unless the service makes itself
undumpable, read its environment (/proc/PID/environ), the files mounted in it (the secret
env file, through /proc/PID/root) and write its memory. Root in a container is the host's
root, who is trusted: not another local user.
"""

from __future__ import annotations

import contextlib
import pwd
from collections.abc import Callable
from pathlib import Path

SUBUID = Path("/etc/subuid")
# A uid for images to run as that no host account has: outside every range a Debian or
# systemd host hands out, that is its accounts (100-999, 1000-59999), systemd's dynamic
# users (61184-65519), nobody (65534) and the subordinate uids of rootless containers
# (100000 up). The demo image runs as it.
UNSHARED_UID = 70713


def image_uid(user: str, passwd: Callable[[], str | None]) -> int | None:
    """The uid an image's `USER` (its Config.User) runs as: "" is root, "UID[:GID]" is
    UID, a name is looked up in the image's own /etc/passwd (read by `passwd`, None when
    it cannot be); None when it is not there, and then the engine refuses to start it."""
    name = user.partition(":")[0]
    if not name:
        return 0
    if name.isdigit():
        return int(name)
    for line in (passwd() or "").splitlines():
        fields = line.split(":")
        if len(fields) >= 3 and fields[0] == name and fields[2].isdigit():
            return int(fields[2])
    return None


def host_holders(uid: int, subuid: Path = SUBUID) -> list[str]:
    """Who besides root can run processes as `uid` on this machine: the account that has
    it, and the accounts whose subordinate uid range holds it."""
    if uid == 0:
        return []
    holders = []
    with contextlib.suppress(KeyError):  # no account has it
        holders.append(f"the account {pwd.getpwuid(uid).pw_name}")
    for owner, start, count in _subordinate_ranges(subuid):
        if start <= uid < start + count:
            holders.append(f"{owner}'s rootless containers ({subuid})")
    return holders


def _subordinate_ranges(path: Path) -> list[tuple[str, int, int]]:
    """`owner:start:count` lines; an unreadable file or a malformed line gives nothing."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return []
    ranges = []
    for line in text.splitlines():
        owner, _, rest = line.strip().partition(":")
        start, _, count = rest.partition(":")
        if owner and start.isdigit() and count.isdigit():
            ranges.append((owner, int(start), int(count)))
    return ranges


def shared_uid_warning(
    where: str, image: str, user: str, uid: int, holders: list[str], secrets_at: str
) -> str:
    """One line: who else has the image's uid, what they can do, and the fix."""
    return (
        f"{where}: {image} runs as uid {uid} (USER {user}), which this machine also gives"
        f" to {' and to '.join(holders)}: their processes can signal the replicas and,"
        " unless the service makes itself undumpable, read their environment and secret"
        f" env values (/proc/PID/environ, /proc/PID/root{secrets_at}) and write their"
        f" memory; give the image a USER uid no host account uses, e.g."
        f" USER {UNSHARED_UID}:{UNSHARED_UID} as the demo image's (SECURITY.md,"
        " 'Secret service.env values')"
    )
