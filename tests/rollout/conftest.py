"""A simulated world per test: init's manifest (with the test's changes), a deployed
stable that has served a minute of traffic, and the shipped policy, embedded."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from bench.support.sim import SimWorld, TrackModel, init_manifest, sim_world

from swiftdeploy.policy import EmbeddedEngine
from swiftdeploy.rollout.engine import RolloutEngine

World = Callable[..., tuple[SimWorld, RolloutEngine]]
POLICIES = Path(__file__).resolve().parents[2] / "policies"


@pytest.fixture(scope="session")
def shipped_policy() -> EmbeddedEngine:
    return EmbeddedEngine(POLICIES)


@pytest.fixture
def world(tmp_path: Path, shipped_policy: EmbeddedEngine) -> World:
    """world(total_rps, canary=TrackModel(...), seed=..., **manifest changes)."""

    def build(
        total_rps: float,
        canary: TrackModel | None = None,
        stable: TrackModel | None = None,
        seed: int = 7,
        **changes: object,
    ) -> tuple[SimWorld, RolloutEngine]:
        loaded = init_manifest(tmp_path, **changes)
        made = sim_world(
            loaded,
            total_rps=total_rps,
            stable=stable or TrackModel(),
            canary=canary or TrackModel(),
            seed=seed,
        )
        return made, made.engine(shipped_policy)

    return build
