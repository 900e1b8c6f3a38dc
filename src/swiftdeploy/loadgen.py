"""Bounded load with `hey`: a fixed duration, connection count and rate, then a summary.

Used by analysis steps (like Flagger's load tester), tests and benchmarks. Every run
stops by itself: hey's `-z` bounds it in time, `-q` per connection bounds the rate.
"""

from __future__ import annotations

import ctypes
import os
import re
import signal
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field

from swiftdeploy.errors import BadInputError, CommandFailedError

HEY = "hey"
_STATUS = re.compile(r"^\s*\[(\d{3})\]\s+(\d+) responses", re.MULTILINE)
_ERRORS = re.compile(r"^\s*\[(\d+)\]\s+(.+)$", re.MULTILINE)


@dataclass(frozen=True)
class LoadResult:
    statuses: dict[int, int]
    errors: dict[str, int] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return sum(self.statuses.values()) + sum(self.errors.values())

    @property
    def failed(self) -> int:
        """Transport errors plus 5xx responses."""
        return sum(n for code, n in self.statuses.items() if code >= 500) + sum(
            self.errors.values()
        )


def parse_hey(output: str) -> LoadResult:
    statuses = {int(code): int(n) for code, n in _STATUS.findall(output)}
    errors: dict[str, int] = {}
    if "Error distribution:" in output:
        tail = output.split("Error distribution:", 1)[1]
        for count, message in _ERRORS.findall(tail):
            errors[message.strip()] = errors.get(message.strip(), 0) + int(count)
    return LoadResult(statuses=statuses, errors=errors)


PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def _die_with_parent(parent: int) -> Callable[[], None]:
    """In hey, before it runs: SIGKILL when the process that started it dies (a rollout
    driver killed with SIGKILL), so a step's synthetic traffic never outlives what looks
    at it; and gone at once if that happened before the call."""

    def arrange() -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent:
            os._exit(1)

    return arrange


class LoadRun:
    """A hey process running in the background; `wait()` returns its summary."""

    def __init__(
        self, url: str, seconds: float, connections: int, rate_per_connection: float
    ) -> None:
        if not url.startswith(("http://127.", "http://localhost", "http://[::1]")):
            raise BadInputError(f"load goes to loopback only, not {url}")
        argv = [
            HEY,
            "-z", f"{seconds:g}s",
            "-c", str(connections),
            "-q", f"{rate_per_connection:g}",
            "-t", "10",
            url,
        ]  # fmt: skip
        self.seconds = seconds
        try:
            self._process = subprocess.Popen(
                argv,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                preexec_fn=_die_with_parent(os.getpid()),  # noqa: PLW1509 - prctl only
            )
        except FileNotFoundError:
            raise CommandFailedError("hey is not installed (apt-get install hey)") from None

    def wait(self) -> LoadResult:
        try:
            output, _ = self._process.communicate(timeout=self.seconds + 30)
        except subprocess.TimeoutExpired:
            self._process.kill()
            output, _ = self._process.communicate()
            raise CommandFailedError("hey did not stop on time") from None
        code = self._process.returncode
        if code < 0:  # a signal it did not handle: say which, hey had no time to
            raise CommandFailedError(f"hey was killed by {signal.Signals(-code).name}")
        if code != 0:
            raise CommandFailedError(f"hey failed (exit {code}): {output.strip()[-200:]}")
        return parse_hey(output)

    def finish(self) -> LoadResult:
        """Stop now and return the summary (hey reports what it did on SIGINT)."""
        if self._process.poll() is None:
            self._process.send_signal(signal.SIGINT)
        return self.wait()

    def stop(self) -> None:
        """Kill it if still running; safe to call after `wait()`."""
        if self._process.poll() is None:
            self._process.kill()
        if self._process.stdout is not None and not self._process.stdout.closed:
            self._process.communicate()
