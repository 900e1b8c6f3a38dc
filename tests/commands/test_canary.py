"""`start_canary(engine, version, weight)`: the canary's replicas started and routed at
the first step's weight (or the one given), its evidence counted from the start, the
rollout left to a person; what cannot start is refused untouched."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from swiftdeploy.commands.canary import start_canary
from swiftdeploy.errors import BadInputError, StateError
from swiftdeploy.state import Phase
from tests.commands.conftest import Simulated


def test_the_canary_starts_at_the_first_steps_weight(simulated: Callable[..., Simulated]) -> None:
    project = simulated()
    state = start_canary(project.engine, "v2", None)
    assert (state.phase, state.canary_version, state.step_index) == (Phase.PROGRESSING, "v2", 0)
    assert state.canary_weight == 10  # init's first step
    assert project.world.tracks.routed_weight() == 10
    assert [(r.version, r.ready) for r in state.track("canary")] == [("v2", True)]
    assert state.rollout_id
    assert state.evidence.steps[-1].weight == 10  # counted from the start
    assert project.state() == state


def test_a_weight_given_is_the_one_routed(simulated: Callable[..., Simulated]) -> None:
    project = simulated()
    state = start_canary(project.engine, "v2", 40)
    assert state.canary_weight == 40
    assert project.world.tracks.routed_weight() == 40


@pytest.mark.parametrize("weight", [-1, 101])
def test_a_weight_outside_0_100_starts_nothing(
    simulated: Callable[..., Simulated], weight: int
) -> None:
    project = simulated()
    before = project.state()
    with pytest.raises(BadInputError, match=f"--weight {weight} is outside 0-100"):
        start_canary(project.engine, "v2", weight)
    assert project.state() == before


def test_a_second_canary_or_the_stable_version_is_refused(
    simulated: Callable[..., Simulated],
) -> None:
    project = simulated()
    with pytest.raises(BadInputError, match="v1 is already the stable version"):
        start_canary(project.engine, "v1", None)
    running = start_canary(project.engine, "v2", None)
    with pytest.raises(StateError, match=r"a canary \(v2\) is already running"):
        start_canary(project.engine, "v3", None)
    assert project.state() == running
