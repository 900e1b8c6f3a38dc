"""The traffic router interface: where requests go, changed without dropping any."""

from __future__ import annotations

from typing import Protocol

from pydantic import BaseModel, ConfigDict, Field

from swiftdeploy.proc import ProcessSpec


class Routes(BaseModel):
    """Weights and endpoints (host:port) of both tracks."""

    model_config = ConfigDict(frozen=True)

    canary_weight: int = Field(default=0, ge=0, le=100)
    stable: tuple[str, ...] = ()
    canary: tuple[str, ...] = ()
    # The rollout a sticky pin is bound to (its id; empty without a canary): a pin
    # issued in one rollout is worth nothing in the next.
    rollout: str = Field(default="", pattern=r"^[A-Za-z0-9._-]{0,64}$")

    @property
    def stable_weight(self) -> int:
        return 100 - self.canary_weight


class RouterStatus(BaseModel):
    model_config = ConfigDict(frozen=True)

    routes: Routes
    down: tuple[str, ...] = ()


class TrafficRouter(Protocol):
    name: str

    def prepare(self) -> ProcessSpec:
        """Render and check the router's config; return the process that serves it."""
        ...

    def check(self) -> None:
        """Check the config the router would serve, starting nothing; raises
        BadInputError in the router's own words (what `validate` runs)."""
        ...

    def wait_ready(self, timeout: float) -> None: ...

    def apply(self, routes: Routes) -> None:
        """Make `routes` current, persisting them first so a restart restores them."""
        ...

    def current(self) -> RouterStatus: ...

    def read_metrics(self, track: str) -> str:
        """One track's cumulative request counts and latency histogram as the router
        counted them, as Prometheus text: what the `nginx` metrics provider reads."""
        ...

    def close(self) -> None:
        """Release what the router's client holds open (connections to its admin)."""
        ...

    def read_history(self, track: str, start: int, end: int) -> dict[str, object]:
        """One track's requests, errors and histogram over the whole seconds
        [start, end) from the router's recent history; raises TrafficError."""
        ...
