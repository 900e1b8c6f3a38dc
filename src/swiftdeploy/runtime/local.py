"""The local backend: the replicas are processes of the project's supervisor
(`runtime.supervisor.ProcessSupervisor`), beside the platform, and `HostedTracks`
routes them through nginx.

This module is a `runtime.base.Backend`: its module-level functions are the backend's.
"""

from __future__ import annotations

import sys
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path

from swiftdeploy import proc
from swiftdeploy.manifest import PORT_ENV, LoadedManifest
from swiftdeploy.proc import ProcessSpec
from swiftdeploy.runtime.base import (
    BackendDeps,
    Check,
    ProcessInfo,
    ProcessManager,
    TrackRuntime,
)
from swiftdeploy.runtime.hosted import (
    PLATFORM_PROCESSES,
    HostedTracks,
    replica_env,
    secret_env_names,
)
from swiftdeploy.runtime.supervisor import ProcessSupervisor
from swiftdeploy.state import FileStateStore, Replica, StateStore


class LocalReplicas:
    """Replicas as supervisord programs running the manifest's service.command."""

    def __init__(self, loaded: LoadedManifest, processes: ProcessManager) -> None:
        self.loaded = loaded
        self.processes = processes

    def start(self, replica: Replica) -> None:
        command = _command(self.loaded)
        program = proc.resolve_program(command[0], where="service.command")
        argv = [program] + [
            arg.format(port=replica.port, version=replica.version) for arg in command[1:]
        ]
        # The port is in the environment too, so a command can keep it out of its argv,
        # which every local user can read (`ps`); the environment only the owner can.
        env = replica_env(self.loaded, replica) | {PORT_ENV: str(replica.port)}
        self.processes.start(
            ProcessSpec(
                name=replica.name,
                argv=argv,
                env=env,
                log_path=Path(self.logs(replica.name)),
                hidden_env=secret_env_names(self.loaded),
            )
        )

    def stop(self, name: str) -> None:
        self.processes.stop(name)

    def inspect(self) -> dict[str, ProcessInfo]:
        return {p.name: p for p in self.processes.processes() if p.name not in PLATFORM_PROCESSES}

    def logs(self, name: str) -> str:
        return str(self.loaded.state_dir / "logs" / f"{name}.log")

    def check_version(self, version: str) -> None:
        """Every version can start: the command takes it as an argument."""


def _command(loaded: LoadedManifest) -> list[str]:
    command = loaded.manifest.service.command
    assert command is not None  # the manifest requires it for the local runtime
    return command


# --- the Backend functions ---------------------------------------------------------

NGINX_ROUTED = True
HOST_DRIVER = True


def process_manager(loaded: LoadedManifest) -> ProcessSupervisor:
    return ProcessSupervisor(loaded.state_dir)


def create_tracks(deps: BackendDeps) -> TrackRuntime:
    assert deps.router is not None  # NGINX_ROUTED: open_fleet always builds one
    return HostedTracks(deps, deps.router, LocalReplicas(deps.loaded, deps.processes))


def preflight(loaded: LoadedManifest) -> list[str]:
    program = proc.resolve_program(_command(loaded)[0], where=loaded.where("service.command"))
    return [f"service.command: {program}"]


def doctor(loaded: LoadedManifest | None) -> list[Check]:
    ok, detail = proc.version_of([sys.executable, "-m", "supervisor.supervisord", "--version"])
    return [Check("supervisord", ok, detail)]


def state_store(loaded: LoadedManifest) -> StateStore:
    return FileStateStore(loaded.state_dir)


def shared_lock(loaded: LoadedManifest) -> AbstractContextManager[None]:
    # Nothing outside this machine drives a local project: its lock in the state
    # directory is the only one.
    return nullcontext()
