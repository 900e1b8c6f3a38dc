"""The runtime interface: keeps named processes alive."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol


@dataclass(frozen=True)
class ProcessSpec:
    name: str
    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)
    log_path: Path | None = None
    # {"pid_file", "name"}: take over from a SIGKILLed predecessor's
    # surviving children (see runtime/launch.py)
    takeover: dict[str, str] | None = None


@dataclass(frozen=True)
class ProcessInfo:
    name: str
    state: str  # supervisord's words: RUNNING, STARTING, BACKOFF, EXITED, FATAL, STOPPED
    pid: int

    @property
    def running(self) -> bool:
        return self.state == "RUNNING"


class Runtime(Protocol):
    name: str

    def ensure_running(self) -> None:
        """Start the process manager if it is not running."""
        ...

    def start(self, spec: ProcessSpec) -> ProcessInfo: ...

    def stop(self, name: str) -> None:
        """Stop and forget a process; stopping an unknown one is a no-op."""
        ...

    def processes(self) -> list[ProcessInfo]: ...

    def shutdown(self) -> list[int]:
        """Stop everything, the manager too; return every pid that was stopped."""
        ...

    def is_running(self) -> bool: ...
