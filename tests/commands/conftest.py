"""What the verbs' tests share: init's project with v1 deployed on a simulated service
(bench.support.sim: the real fleet, rollout engine, state and shipped Rego; replicas
and router simulated, traffic in simulated time), for the verbs that move a canary."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from bench.support.sim import SimWorld, TrackModel, init_manifest, sim_world

from swiftdeploy.fleet import Fleet
from swiftdeploy.policy import engine_from_policy
from swiftdeploy.policy.base import PolicyEngine
from swiftdeploy.rollout.engine import RolloutEngine
from swiftdeploy.state import State

# Requests a second across both tracks: at init's first step (10%) the canary gets 50.
TOTAL_RPS = 500
# A canary failing 20% of its requests next to a stable failing 0.5%: the shipped policy
# says roll back once it has seen a minute of it.
FAILING = TrackModel(error_rate=0.2)


@dataclass
class Simulated:
    """A project's fleet and rollout engine on the simulated service; `said` keeps what
    the verbs told the person (the fleet's progress lines)."""

    world: SimWorld
    engine: RolloutEngine
    said: list[str] = field(default_factory=list)

    @property
    def fleet(self) -> Fleet:
        return self.world.fleet

    def state(self) -> State:
        return self.world.store.load()

    def serve(self, seconds: float) -> None:
        """Let `seconds` of traffic pass."""
        self.world.clock.sleep(seconds)

    def decisions(self) -> list[dict[str, object]]:
        return list(self.world.recorder.decisions())

    def reasons(self) -> list[object]:
        """Why the state changed, each transition's reason in the trail, in order."""
        return [f["reason"] for kind, f in self.world.recorder.records if kind == "transition"]


@pytest.fixture
def simulated(tmp_path: Path) -> Iterator[Callable[..., Simulated]]:
    """Makes the project, its canary behaving as `canary` (healthy by default)."""
    policies: list[PolicyEngine] = []

    def make(canary: TrackModel | None = None) -> Simulated:
        loaded = init_manifest(tmp_path)
        world = sim_world(
            loaded, total_rps=TOTAL_RPS, stable=TrackModel(), canary=canary or TrackModel(), seed=7
        )
        policies.append(engine_from_policy(loaded.manifest.policy, loaded.project_dir))
        made = Simulated(world, world.engine(policies[-1]))
        world.fleet.progress = made.said.append
        return made

    yield make
    for policy in policies:
        policy.close()
