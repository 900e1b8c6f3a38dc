"""Persisted project state: phase, versions, weight and replicas.

Where it is kept is a `StateStore`'s: `.swiftdeploy/state.json` for the backends that
run on this machine (`FileStateStore`), a ConfigMap in the cluster for Kubernetes, so
any operator's `status` and `resume` find it. Written whole after every change, so a
crash at any point leaves the last consistent state; readers never see half of one.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field, JsonValue, ValidationError, model_validator

from swiftdeploy.durations import format_ago, format_duration
from swiftdeploy.errors import StateError
from swiftdeploy.fsutil import atomic_write, private_dir
from swiftdeploy.state.evidence import Evidence

Track = Literal["stable", "canary"]


class Phase(StrEnum):
    IDLE = "idle"
    PROGRESSING = "progressing"
    PAUSED = "paused"
    PROMOTING = "promoting"
    PROMOTED = "promoted"
    ROLLING_BACK = "rolling-back"
    ROLLED_BACK = "rolled-back"
    FAILED = "failed"


class Replica(BaseModel):
    model_config = ConfigDict(frozen=True)

    name: str
    track: Track
    version: str
    port: int
    ready: bool = False  # passed its health check; only ready replicas get traffic

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.port}"


class LastLook(BaseModel):
    """The last look of a rollout, for `status`: what was done, why, and where it stands."""

    model_config = ConfigDict(frozen=True)

    at: float
    action: str
    reasons: tuple[str, ...] = ()
    progress: tuple[tuple[str, str], ...] = ()


class HookAnswer(BaseModel):
    """A gating or informational hook's latest answer in this rollout (docs/notifications.md):
    kept so a restarted driver keeps an approval, and given to the canary policy."""

    model_config = ConfigDict(frozen=True)

    type: str
    result: Literal["ok", "refused", "failed"]
    status: int | None = None
    at: float
    answer: JsonValue = None  # bounded (notify/hooks.py)
    error: str | None = None  # why there was no answer (a timeout, a refused connection)
    step: int
    asks: int = 1  # how many times it was asked at this step (a gate asks again)

    @property
    def ok(self) -> bool:
        return self.result == "ok"


class HookWait(BaseModel):
    """What a rollout waits for: the hooks of one type that have not answered 2xx yet."""

    model_config = ConfigDict(frozen=True)

    type: str
    hooks: tuple[str, ...]
    step: int
    since: float

    def describe(self, answers: Mapping[str, HookAnswer], now: float) -> str:
        """In words, for people (`status`, the driver's answers): what passed, which hook
        of which type it waits for, for how long, before what, and the last answers.
        'step 2 passed; waiting 40 s for hook approve (confirm-promotion) before
        promoting: HTTP 403 12 s ago'."""
        names = ", ".join(self.hooks)
        what = f"{'hook' if len(self.hooks) == 1 else 'hooks'} {names} ({self.type})"
        waited = f"waiting {format_duration(max(now - self.since, 0.0))} for {what}"
        if self.type == "pre-rollout":
            said = f"{waited} before the canary gets any traffic"
        else:
            after = "promoting" if self.type == "confirm-promotion" else f"step {self.step + 2}"
            said = f"step {self.step + 1} passed; {waited} before {after}"
        heard = [(name, _heard(answers.get(name), self.step, now)) for name in self.hooks]
        if len(heard) == 1:
            return f"{said}: {heard[0][1]}"
        return f"{said}: " + "; ".join(f"{name} {last}" for name, last in heard)


def _heard(answer: HookAnswer | None, step: int, now: float) -> str:
    if answer is None or answer.step != step:
        return "asked, no answer yet"
    if answer.status is None:
        return f"no answer ({answer.error}) {format_ago(answer.at, now)}"
    return f"HTTP {answer.status} {format_ago(answer.at, now)}"


class State(BaseModel):
    model_config = ConfigDict(frozen=True)

    phase: Phase = Phase.IDLE
    stable_version: str | None = None
    canary_version: str | None = None
    canary_weight: int = Field(default=0, ge=0, le=100)
    step_index: int | None = None
    replicas: tuple[Replica, ...] = ()
    prometheus_port: int | None = None
    rollout_id: str | None = None
    # Set by `rollout`: steps advance on their own, by the statistical tests (the driver
    # runs them). A canary started by hand has none. Persisted as `analysis` before.
    auto_advance: bool = False
    step_started_at: float | None = None
    # When an undecided step holds: max_duration after the step began or was resumed.
    step_deadline: float | None = None
    resume_at: float | None = None  # end of a timed pause
    # manual: a step passed and waits for `promote`; timed: a step's pause; held:
    # undecided at max_duration (the driver keeps looking); operator: `pause` by a person
    pause_kind: Literal["manual", "timed", "held", "operator"] | None = None
    # What each track served in each step of this canary, as counted look by look.
    evidence: Evidence = Field(default_factory=Evidence)
    last_look: LastLook | None = None
    message: str | None = None  # why the rollout is paused, held or ended
    # The hooks' latest answers in this rollout, by name, and the gate a step waits on.
    hooks: dict[str, HookAnswer] = Field(default_factory=dict)
    awaiting: HookWait | None = None

    @model_validator(mode="before")
    @classmethod
    def _auto_advance_was_analysis(cls, data: Any) -> Any:
        """A state written when the flag was called `analysis` reads the same."""
        if isinstance(data, dict) and "analysis" in data and "auto_advance" not in data:
            data = {("auto_advance" if key == "analysis" else key): v for key, v in data.items()}
        return data

    updated_at: float = 0.0

    def track(self, track: Track) -> list[Replica]:
        return [r for r in self.replicas if r.track == track]

    def with_replica(self, replica: Replica) -> State:
        others = tuple(r for r in self.replicas if r.name != replica.name)
        return self.model_copy(update={"replicas": (*others, replica)})

    def without(self, names: set[str]) -> State:
        return self.model_copy(
            update={"replicas": tuple(r for r in self.replicas if r.name not in names)}
        )


class StateStore(Protocol):
    def load(self) -> State:
        """The saved state; a fresh `State()` when none was saved."""
        ...

    def save(self, state: State) -> State:
        """Save the whole state (stamped with `updated_at`) and return it as saved."""
        ...


class FileStateStore:
    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir
        self.path = state_dir / "state.json"

    def load(self) -> State:
        try:
            raw = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return State()
        try:
            return State.model_validate(json.loads(raw))
        except (ValueError, ValidationError) as exc:
            raise StateError(
                f"{self.path}: state file is corrupt ({str(exc).splitlines()[0]})",
                hint="run `swiftdeploy teardown` to start over",
            ) from None

    def save(self, state: State) -> State:
        private_dir(self.state_dir)
        state = state.model_copy(update={"updated_at": time.time()})
        atomic_write(self.path, state.model_dump_json(indent=2) + "\n")
        return state
