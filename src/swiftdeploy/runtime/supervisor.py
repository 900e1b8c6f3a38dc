"""The process supervisor: one supervisord per project, driven over XML-RPC on a 0700
unix socket. It keeps the platform (nginx, OPA, Prometheus, the driver) running for
every runtime, and the local runtime's replicas too.

Each process is a program group in its own include file, added and removed with
`reloadConfig` + `addProcessGroup` / `removeProcessGroup`, so starting or stopping a
replica never restarts the others.
"""

from __future__ import annotations

import contextlib
import json
import re
import shlex
import sys
import time
import xmlrpc.client
from pathlib import Path
from typing import Any, cast

from supervisor.xmlrpc import SupervisorTransport

from swiftdeploy import proc
from swiftdeploy.errors import RuntimeProcessError
from swiftdeploy.fsutil import atomic_write, private_dir
from swiftdeploy.proc import ProcessSpec
from swiftdeploy.runtime.base import ProcessInfo

MAX_SOCKET_PATH = 100  # AF_UNIX paths stop at 108 bytes on Linux
_PROGRAM_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,80}$")

SUPERVISORD_CONF = """\
[unix_http_server]
file={socket}
chmod=0700

[supervisord]
logfile={state_dir}/logs/supervisord.log
pidfile={state_dir}/supervisord.pid
directory={state_dir}
identifier=swiftdeploy
nodaemon=false
silent=true

[rpcinterface:supervisor]
supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface

[include]
files = {state_dir}/supervisor.d/*.conf
"""

PROGRAM_CONF = """\
[program:{name}]
command={command}
autostart=true
autorestart={restart}
exitcodes=0
startsecs={startsecs}
startretries=1000
stopsignal=TERM
stopwaitsecs=10
stopasgroup=true
killasgroup=true
stdout_logfile={log}
stdout_logfile_maxbytes=5MB
stdout_logfile_backups=1
redirect_stderr=true
"""


def _escape(value: str) -> str:
    # supervisord expands %(name)s in config values; a literal % must be doubled.
    return value.replace("%", "%%")


class ProcessSupervisor:
    """A `runtime.base.ProcessManager` on supervisord."""

    name = "local"

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir
        self.socket = state_dir / "supervisor.sock"
        self.conf = state_dir / "supervisord.conf"
        self.programs = state_dir / "supervisor.d"
        self.pidfile = state_dir / "supervisord.pid"
        if len(str(self.socket)) > MAX_SOCKET_PATH:
            raise RuntimeProcessError(
                f"state directory path is too long for a unix socket: {self.socket}",
                hint="move the project to a shorter path",
            )

    def _call(self, method: str, *args: Any) -> Any:
        """One XML-RPC call on a fresh connection, closed after (supervisor's transport
        keeps its socket open otherwise)."""
        transport = SupervisorTransport(None, None, f"unix://{self.socket}")
        try:
            proxy = xmlrpc.client.ServerProxy("http://127.0.0.1", transport=transport)
            return getattr(proxy.supervisor, method)(*args)
        finally:
            transport.close()

    def is_running(self) -> bool:
        if not self.socket.exists():
            return False
        try:
            return cast(str, self._call("getState")["statename"]) == "RUNNING"
        except (OSError, xmlrpc.client.Error):
            return False

    def manager_pid(self) -> int | None:
        try:
            return int(self.pidfile.read_text().strip())
        except (OSError, ValueError):
            return None

    def ensure_running(self) -> None:
        if self.is_running():
            return
        private_dir(self.state_dir)
        private_dir(self.state_dir / "logs")
        private_dir(self.programs)
        atomic_write(
            self.conf, SUPERVISORD_CONF.format(socket=self.socket, state_dir=self.state_dir)
        )
        self.socket.unlink(missing_ok=True)
        proc.run(
            [sys.executable, "-m", "supervisor.supervisord", "-c", str(self.conf)], timeout=30
        ).assert_success("starting supervisord")
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.is_running():
                return
            time.sleep(0.05)
        raise RuntimeProcessError(
            "supervisord did not come up within 10s",
            hint=f"see {self.state_dir / 'logs' / 'supervisord.log'}",
        )

    def start(self, spec: ProcessSpec, timeout: float = 15.0) -> ProcessInfo:
        if not _PROGRAM_NAME.match(spec.name):
            # The name goes into supervisord's config as [program:NAME]; nothing that
            # could end the line or open a section may pass (defence in depth: versions
            # are checked where they enter).
            raise RuntimeProcessError(f"refusing process name {spec.name!r}")
        self.ensure_running()
        log = spec.log_path or self.state_dir / "logs" / f"{spec.name}.log"
        launch_file = self.programs / f"{spec.name}.json"
        launch = {
            "argv": spec.argv,
            "env": spec.env,
            "takeover": spec.takeover,
            "hidden_env": list(spec.hidden_env),
        }
        atomic_write(launch_file, json.dumps(launch))
        launcher = [sys.executable, "-m", "swiftdeploy.runtime.launch", str(launch_file)]
        text = PROGRAM_CONF.format(
            name=spec.name,
            command=_escape(shlex.join(launcher)),
            log=log,
            restart="true" if spec.restart == "always" else "unexpected",
            # a job that finishes at once has not failed to start
            startsecs=1 if spec.restart == "always" else 0,
        )
        atomic_write(self.programs / f"{spec.name}.conf", text)
        try:
            self._call("reloadConfig")
            self._call("addProcessGroup", spec.name)
        except xmlrpc.client.Fault as fault:
            if "ALREADY_ADDED" not in fault.faultString:
                raise RuntimeProcessError(
                    f"supervisord refused {spec.name}: {fault.faultString}"
                ) from None
        return self._wait_running(spec.name, timeout, log)

    def _wait_running(self, name: str, timeout: float, log: Path) -> ProcessInfo:
        deadline = time.monotonic() + timeout
        info = self.info(name)
        while time.monotonic() < deadline:
            info = self.info(name)
            if info is not None and info.running:
                return info
            if info is not None and info.state in {"FATAL", "BACKOFF"}:
                break
            time.sleep(0.05)
        tail = _last_line(log)
        raise RuntimeProcessError(
            f"{name} did not start ({info.state if info else 'unknown'})"
            + (f": {tail}" if tail else ""),
            hint=f"see {log}",
        )

    def info(self, name: str) -> ProcessInfo | None:
        try:
            raw = self._call("getProcessInfo", name)
        except xmlrpc.client.Fault:
            return None
        except OSError as exc:
            raise RuntimeProcessError(f"supervisord is not reachable: {exc}") from None
        return ProcessInfo(name=name, state=str(raw["statename"]), pid=int(raw["pid"]))

    def stop(self, name: str) -> None:
        if not self.is_running():
            self._forget(name)
            return
        with contextlib.suppress(xmlrpc.client.Fault):
            self._call("stopProcessGroup", name, True)
        with contextlib.suppress(xmlrpc.client.Fault):
            self._call("removeProcessGroup", name)
        self._forget(name)

    def _forget(self, name: str) -> None:
        (self.programs / f"{name}.conf").unlink(missing_ok=True)
        (self.programs / f"{name}.json").unlink(missing_ok=True)

    def processes(self) -> list[ProcessInfo]:
        if not self.is_running():
            return []
        return [
            ProcessInfo(name=str(p["name"]), state=str(p["statename"]), pid=int(p["pid"]))
            for p in self._call("getAllProcessInfo")
        ]

    def shutdown(self) -> list[int]:
        pids = [p.pid for p in self.processes() if p.pid]
        manager = self.manager_pid()
        if self.is_running():
            with contextlib.suppress(xmlrpc.client.Fault, OSError):
                self._call("stopAllProcesses", True)
            with contextlib.suppress(xmlrpc.client.Fault, OSError):
                self._call("shutdown")
        if manager:
            pids.append(manager)
        _wait_gone(pids, timeout=15)
        for conf in self.programs.glob("*.conf"):
            self._forget(conf.stem)
        self.socket.unlink(missing_ok=True)
        return pids


def _wait_gone(pids: list[int], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not any(proc.pid_alive(p) for p in pids):
            return
        time.sleep(0.05)
    alive = [p for p in pids if proc.pid_alive(p)]
    raise RuntimeProcessError(f"processes still alive after shutdown: {alive}")


def _last_line(path: Path) -> str:
    try:
        lines = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return lines[-1][:200] if lines else ""
