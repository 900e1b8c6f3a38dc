"""How a running rollout's driver and the people steering it talk: requests and
answers through a `ControlChannel`, never signals to a pid. On one host, files in the
state directory (`ControlDir`, below); in a cluster, ConfigMaps through the API server
(`runtime/kubernetes/control.py`), so any operator's machine steers the same driver.

- `driver.json`: which process drives the rollout, since when, and how often it was
  restarted (`status` reads it; the driver rewrites it at every look as a heartbeat).
- `requests/`: a person's `promote`, `pause`, `resume`, `abort` or `weight N`, one JSON
  file each, taken by the driver between looks in the order they were made; the
  driver's answer goes to `answers/<id>.json`, which the person's CLI waits for.

The state directory is 0700 and every file 0600 (`fsutil`), so only the project's owner
can steer it; who asked is recorded with the request and in the audit trail.
"""

from __future__ import annotations

import getpass
import os
import time
import uuid
from pathlib import Path
from typing import Literal, Protocol

from pydantic import BaseModel, ConfigDict, ValidationError

from swiftdeploy.fsutil import atomic_write, private_dir

Verb = Literal["start", "promote", "pause", "resume", "abort", "weight"]
Result = Literal["done", "refused", "failed"]

DRIVER_FILE = "driver.json"
REQUESTS_DIR = "requests"
ANSWERS_DIR = "answers"


class DriverInfo(BaseModel):
    """The process driving the service's rollout; rewritten at every look."""

    model_config = ConfigDict(frozen=True)

    pid: int
    rollout_id: str | None
    started_at: float  # this process
    first_started_at: float  # the first driver of this rollout
    restarts: int = 0
    heartbeat_at: float = 0.0
    exited: str | None = None  # why it stopped, once it has
    holder: str | None = None  # a driver in the cluster: its Lease identity (host/pid/...)


class Request(BaseModel):
    model_config = ConfigDict(frozen=True)

    id: str
    verb: Verb
    requested_by: str
    at: float
    reason: str | None = None
    weight: int | None = None
    to_the_end: bool = False  # promote --all
    force: bool = False
    version: str | None = None  # start: the version to roll out
    rollout_id: str | None = None  # start: chosen by the person's CLI, which follows it


class Answer(BaseModel):
    model_config = ConfigDict(frozen=True)

    id: str
    result: Result
    message: str
    exit_code: int = 0
    hint: str | None = None


def requester() -> str:
    """Who asks, as the audit trail names people: the login, and who sudo'ed to it."""
    user = getpass.getuser()
    sudo = os.environ.get("SUDO_USER")
    return f"{sudo} (as {user})" if sudo and sudo != user else user


class ControlChannel(Protocol):
    """Where a driver and the people steering it meet: the driver's record of itself,
    and requests taken once, oldest first, each answered."""

    def driver(self) -> DriverInfo | None: ...

    def save_driver(self, info: DriverInfo) -> None: ...

    def submit(self, verb: Verb, **fields: object) -> Request: ...

    def pending(self) -> list[Request]:
        """The requests not yet taken, oldest first."""
        ...

    def take(self, request: Request) -> bool:
        """Mark a request taken before acting on it (a driver killed while acting finds
        it taken, not pending, and does not act twice); False when it was withdrawn or
        taken meanwhile: then nobody acts on it here."""
        ...

    def interrupted(self) -> list[Request]:
        """Requests a previous driver took and never answered."""
        ...

    def answer(self, request: Request, answer: Answer) -> None: ...

    def wait_answer(self, request: Request, timeout_s: float) -> Answer | None:
        """The driver's answer, or None after `timeout_s`."""
        ...

    def withdraw(self, request: Request) -> bool:
        """Take back a request no driver took; False when it was taken meanwhile."""
        ...


def new_request(verb: Verb, **fields: object) -> Request:
    """A request from the person running this command, stamped now."""
    return Request.model_validate(
        {
            "id": f"{time.time_ns():020d}-{uuid.uuid4().hex[:8]}",
            "verb": verb,
            "requested_by": requester(),
            "at": time.time(),
            **fields,
        }
    )


class ControlDir:
    """The driver's files in one project's state directory (a `ControlChannel`)."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir
        self.driver_path = state_dir / DRIVER_FILE
        self.requests = state_dir / REQUESTS_DIR
        self.answers = state_dir / ANSWERS_DIR

    # --- the driver's record of itself -----------------------------------------------

    def driver(self) -> DriverInfo | None:
        try:
            return DriverInfo.model_validate_json(self.driver_path.read_text(encoding="utf-8"))
        except (OSError, ValidationError, ValueError):
            return None

    def save_driver(self, info: DriverInfo) -> None:
        private_dir(self.state_dir)
        atomic_write(self.driver_path, info.model_dump_json() + "\n")

    # --- requests and answers ----------------------------------------------------------

    def submit(self, verb: Verb, **fields: object) -> Request:
        request = new_request(verb, **fields)
        private_dir(self.state_dir)
        private_dir(self.requests)
        atomic_write(self.requests / f"{request.id}.json", request.model_dump_json())
        return request

    def pending(self) -> list[Request]:
        """The requests not yet taken, oldest first; an unreadable one is dropped so it
        cannot block the queue."""
        return [request for request, _ in self._read(".json")]

    def take(self, request: Request) -> bool:
        """Mark a request taken before acting on it: a driver killed while acting finds
        it taken, not pending, and does not act twice (`interrupted`)."""
        try:
            (self.requests / f"{request.id}.json").rename(self.requests / f"{request.id}.taken")
        except FileNotFoundError:
            return False  # withdrawn by its CLI meanwhile
        return True

    def interrupted(self) -> list[Request]:
        """Requests a previous driver took and never answered."""
        return [request for request, _ in self._read(".taken")]

    def answer(self, request: Request, answer: Answer) -> None:
        private_dir(self.answers)
        atomic_write(self.answers / f"{request.id}.json", answer.model_dump_json())
        for suffix in (".taken", ".json"):
            (self.requests / f"{request.id}{suffix}").unlink(missing_ok=True)

    def _read(self, suffix: str) -> list[tuple[Request, Path]]:
        try:
            paths = sorted(p for p in self.requests.iterdir() if p.suffix == suffix)
        except FileNotFoundError:
            return []
        found = []
        for path in paths:
            try:
                found.append((Request.model_validate_json(path.read_text(encoding="utf-8")), path))
            except (OSError, ValidationError, ValueError):
                path.unlink(missing_ok=True)
        return found

    def wait_answer(self, request: Request, timeout_s: float) -> Answer | None:
        """The driver's answer, or None after `timeout_s`."""
        path = self.answers / f"{request.id}.json"
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                answer = Answer.model_validate_json(path.read_text(encoding="utf-8"))
            except (OSError, ValidationError, ValueError):
                time.sleep(0.05)
                continue
            path.unlink(missing_ok=True)
            return answer
        return None

    def withdraw(self, request: Request) -> bool:
        """Take back a request no driver took; False when it was taken meanwhile."""
        try:
            (self.requests / f"{request.id}.json").unlink()
        except FileNotFoundError:
            return False
        return True
