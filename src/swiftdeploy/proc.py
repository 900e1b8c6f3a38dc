"""The one subprocess helper: argv lists only (no shell), outcomes as small objects."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from swiftdeploy.durations import format_duration
from swiftdeploy.errors import BadInputError, CommandFailedError, SwiftDeployError


@dataclass(frozen=True)
class ProcessSpec:
    """A long-running process a process manager keeps alive (nginx, OPA, a replica)."""

    name: str
    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)
    log_path: Path | None = None
    # {"pid_file", "name", optional "socket"}: take over from a SIGKILLed
    # predecessor's surviving children (see runtime/launch.py)
    takeover: dict[str, str] | None = None
    # "always": a service kept up; "unexpected": a job (the rollout's driver) restarted
    # only when it dies other than by finishing (exit 0)
    restart: Literal["always", "unexpected"] = "always"
    # Names kept out of what the process inherits from its manager's environment (the
    # manifest's secrets, which the shell that started the manager may have exported):
    # a replica under test must not read the notifications' signing key or URLs.
    hidden_env: tuple[str, ...] = ()


@dataclass(frozen=True)
class Outcome:
    argv: tuple[str, ...]
    code: int
    stdout: str
    stderr: str
    elapsed: float

    def assert_success(self, what: str) -> Outcome:
        if self.code != 0:
            detail = (self.stderr or self.stdout).strip().splitlines()
            last = detail[-1] if detail else f"exit code {self.code}"
            raise CommandFailedError(f"{what} failed: {last}")
        return self


def run(
    argv: list[str],
    *,
    timeout: float = 60.0,
    cwd: Path | None = None,
    error: type[SwiftDeployError] = CommandFailedError,
    hint: str | None = None,
) -> Outcome:
    """Run argv and return its outcome; a non-zero exit is returned, not raised. A
    missing program, one that cannot start, or a timeout raises `error`."""
    started = time.monotonic()
    try:
        done = subprocess.run(
            argv, capture_output=True, text=True, timeout=timeout, cwd=cwd, check=False
        )
    except FileNotFoundError:
        raise error(f"{argv[0]} not found (not installed or not on PATH)", hint=hint) from None
    except OSError as exc:
        raise error(f"cannot run {argv[0]}: {exc}", hint=hint) from None
    except subprocess.TimeoutExpired:
        raise error(
            f"{argv[0]} did not finish within {format_duration(timeout)}", hint=hint
        ) from None
    return Outcome(
        tuple(argv), done.returncode, done.stdout, done.stderr, time.monotonic() - started
    )


def resolve_program(name: str, *, where: str) -> str:
    """Absolute path of a program: absolute as given, else the venv's bin first, then PATH.

    The venv's bin comes first so `swiftdeploy-demo` resolves for supervisord too,
    whether or not the user activated the venv.
    """
    if Path(name).is_absolute():
        if Path(name).is_file():
            return name
        raise BadInputError(f"{where}: {name} does not exist", hint="fix the command path")
    venv_bin = Path(sys.executable).parent
    found = shutil.which(name, path=str(venv_bin)) or shutil.which(name)
    if not found:
        raise BadInputError(
            f"{where}: command {name!r} not found on PATH",
            hint="install it or give an absolute path",
        )
    return found


def version_of(argv: list[str], pick: int = 0) -> tuple[bool, str]:
    """Whether `argv` (a `--version` call) runs, and line `pick` of what it printed."""
    if shutil.which(argv[0]) is None:
        return False, f"{argv[0]} not found on PATH"
    try:
        outcome = run(argv, timeout=10)
    except CommandFailedError as exc:
        return False, exc.one_line()
    lines = (outcome.stdout + outcome.stderr).strip().splitlines()
    return outcome.code == 0, lines[pick] if len(lines) > pick else "unknown version"


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie still answers kill(0); it is dead for our purposes.
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False
