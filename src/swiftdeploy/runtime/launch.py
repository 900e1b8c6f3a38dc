"""Exec a process from a JSON launch file: `python -m swiftdeploy.runtime.launch FILE`.

supervisord's own `environment=` cannot carry a value holding both quote kinds, and
its config expands `%(...)s`; a 0600 JSON file carries argv and env exactly, and
exec keeps the pid supervisord watches.

`takeover`: when a previous instance's leader died by SIGKILL, its children (nginx's
workers) live on in its process group and keep serving. The new instance starts next
to them (its TCP listeners use SO_REUSEPORT; its unix socket's path is freed first),
and a forked watcher asks the old group to quit gracefully (SIGQUIT: finish in-flight
requests) once the new one answers, so a crash of the master drops no connection that
was not in flight.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import time
from pathlib import Path

TAKEOVER_WAIT_S = 20.0


def orphans(group: int, name: str) -> list[int]:
    """Live processes in process group `group` whose command is `name`."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        comm = stat[stat.index("(") + 1 : stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2 :].split()
        if comm == name and fields[0] != "Z" and int(fields[2]) == group:
            found.append(int(entry.name))
    return found


def _new_instance_up(leader: int, name: str, pid_file: Path) -> bool:
    """The new leader wrote its pid and has forked its workers (the old workers answer
    on the same ports, so asking a port would not tell the two apart)."""
    try:
        written = int(pid_file.read_text().strip())
    except (OSError, ValueError):
        return False
    return written == leader and len(orphans(leader, name)) >= 2


def retire_old_group(old: int, leader: int, name: str, pid_file: Path) -> None:
    """In a forked child: wait for the new instance, then SIGQUIT the old group."""
    deadline = time.monotonic() + TAKEOVER_WAIT_S
    while time.monotonic() < deadline and not _new_instance_up(leader, name, pid_file):
        time.sleep(0.05)
    time.sleep(0.5)  # the new workers finish their init (routes, health checks)
    for pid in orphans(old, name):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGQUIT)


def main() -> None:
    with open(sys.argv[1], encoding="utf-8") as handle:
        spec = json.load(handle)
    argv = [str(a) for a in spec["argv"]]
    env = {**os.environ, **{str(k): str(v) for k, v in spec["env"].items()}}
    takeover = spec.get("takeover")
    if takeover:
        try:
            old = int(Path(takeover["pid_file"]).read_text().strip())
        except (OSError, ValueError):
            old = 0
        leader = os.getpid()  # exec keeps it: the new instance's leader
        if old and old != leader and orphans(old, takeover["name"]) and os.fork() == 0:
            os.setsid()  # out of the new instance's group: supervisord stops it alone
            retire_old_group(old, leader, takeover["name"], Path(takeover["pid_file"]))
            os._exit(0)
        # A SIGKILLed leader leaves its unix socket's file behind (its workers keep
        # serving on the open one): the new instance could not bind the path.
        if takeover.get("socket"):
            Path(takeover["socket"]).unlink(missing_ok=True)
    os.execvpe(argv[0], argv, env)  # noqa: S606 - argv from our own launch file, no shell


if __name__ == "__main__":
    main()
