"""Exec a process from a JSON launch file: `python -m swiftdeploy.runtime.launch FILE`.

supervisord's own `environment=` cannot carry a value holding both quote kinds, and
its config expands `%(...)s`; a 0600 JSON file carries argv and env exactly, and
exec keeps the pid supervisord watches.

`takeover`: when a previous instance's leader died by SIGKILL, its children (nginx's
workers) live on in its process group and keep serving. The new instance starts next
to them (its listeners use SO_REUSEPORT), and a forked watcher asks the old group to
quit gracefully (SIGQUIT: finish in-flight requests) once the new one answers, so a
crash of the master drops no connection that was not in flight. The old workers keep
listening on the admin unix socket, so its path is unlinked first (they keep their
inode until they quit) or the new instance could not bind it.

`OWN_ENV` in a launch file's env (the rollout's driver): the program gets exactly that
env, not merged with supervisord's (which it captured when the project was deployed:
a secret unset or changed since would live on), and the file, which holds it, is
removed once the program has finished (exit 0). A program that died keeps it for
supervisord's restart.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import NoReturn

TAKEOVER_WAIT_S = 20.0
OWN_ENV = "SWIFTDEPLOY_LAUNCH_OWN_ENV"


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


def run_own(argv: list[str], env: dict[str, str], launch_file: Path, identity: int) -> NoReturn:
    """Run the program with exactly `env` as a child, then remove the launch file if
    it finished (exit 0) and is still the one read (`identity`: its inode), and exit as
    the program did, so supervisord restarts it, or not, as before."""
    child = os.fork()
    if child == 0:
        os.execvpe(argv[0], argv, env)  # noqa: S606 - argv from our own launch file, no shell
    # supervisord signals the whole process group (stopasgroup): the program gets them
    for ignored in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT):
        signal.signal(ignored, signal.SIG_IGN)
    _, status = os.waitpid(child, 0)
    if os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0:
        with contextlib.suppress(FileNotFoundError):
            if launch_file.stat().st_ino == identity:
                launch_file.unlink()
    if os.WIFSIGNALED(status):
        signum = os.WTERMSIG(status)
        with contextlib.suppress(OSError):  # SIGKILL has no handler to reset
            signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)
        os._exit(128 + signum)  # a signal whose default is not to end a process
    os._exit(os.waitstatus_to_exitcode(status))


def main() -> None:
    launch_file = Path(sys.argv[1])
    with launch_file.open(encoding="utf-8") as handle:
        identity = os.fstat(handle.fileno()).st_ino
        spec = json.load(handle)
    argv = [str(a) for a in spec["argv"]]
    given = {str(k): str(v) for k, v in spec["env"].items()}
    if given.pop(OWN_ENV, None):
        run_own(argv, given, launch_file, identity)
    hidden = {str(name) for name in spec.get("hidden_env", [])}
    inherited = {name: value for name, value in os.environ.items() if name not in hidden}
    env = {**inherited, **given}
    takeover = spec.get("takeover")
    if takeover:
        try:
            old = int(Path(takeover["pid_file"]).read_text().strip())
        except (OSError, ValueError):
            old = 0
        leader = os.getpid()  # exec keeps it: the new instance's leader
        if old and old != leader and orphans(old, takeover["name"]):
            if takeover.get("unix_socket"):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(takeover["unix_socket"])
            if os.fork() == 0:
                os.setsid()  # out of the new instance's group: supervisord stops it alone
                retire_old_group(old, leader, takeover["name"], Path(takeover["pid_file"]))
                os._exit(0)
    os.execvpe(argv[0], argv, env)  # noqa: S606 - argv from our own launch file, no shell


if __name__ == "__main__":
    main()
