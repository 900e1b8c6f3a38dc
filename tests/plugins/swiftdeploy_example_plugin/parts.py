"""A router, a metrics provider and a policy engine, each made by the factory its
registry calls."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from swiftdeploy.manifest import Manifest
from swiftdeploy.metrics import ProviderDeps
from swiftdeploy.metrics.base import Measurement
from swiftdeploy.policy import EngineDeps
from swiftdeploy.policy.base import Decision, Reason
from swiftdeploy.proc import ProcessSpec
from swiftdeploy.traffic.base import RouterStatus, Routes


class MemoryRouter:
    """Routes kept in memory: a `TrafficRouter` whose class is its factory."""

    name = "example"

    def __init__(self, manifest: Manifest, state_dir: Path) -> None:
        self.listen = manifest.traffic.listen
        self.routes = Routes()

    def prepare(self) -> ProcessSpec:
        return ProcessSpec(name="example-router", argv=["true"])

    def check(self) -> None:
        """Nothing to render."""

    def wait_ready(self, timeout: float) -> None:
        """Ready at once."""

    def apply(self, routes: Routes) -> None:
        self.routes = routes

    def current(self) -> RouterStatus:
        return RouterStatus(routes=self.routes)

    def read_metrics(self, track: str) -> str:
        return ""

    def close(self) -> None:
        """Holds nothing open."""

    def read_history(self, track: str, start: int, end: int) -> dict[str, object]:
        return {}


class TargetsProvider:
    """Measures nothing; says which targets it would scrape."""

    name = "example"
    resolution_s = 1.0

    def __init__(self, deps: ProviderDeps) -> None:
        self.deps = deps

    def measure(self, track: str, window_s: float) -> Measurement:
        targets = ", ".join(self.deps.app_targets(track))
        return Measurement.no_data(track, self.name, f"would scrape {targets}")

    def mark(self, track: str) -> float | None:
        return None

    def measure_since(self, track: str, since: float) -> Measurement:
        return self.measure(track, 0.0)

    def is_online(self) -> bool:
        return True


def targets_provider(deps: ProviderDeps) -> TargetsProvider:
    return TargetsProvider(deps)


class HoldEngine:
    """Holds every decision, naming the policy directory it was given."""

    name = "example"

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def decide(self, package: str, input: Mapping[str, Any]) -> Decision:
        reason = Reason(rule="example", message=f"{package} from {self.directory.name}")
        return Decision(allow=False, verdict="hold", reasons=(reason,), engine=self.name)

    def check(self) -> list[str]:
        return []

    def close(self) -> None:
        """Holds nothing open."""


def hold_engine(deps: EngineDeps) -> HoldEngine:
    return HoldEngine(deps.directory)
