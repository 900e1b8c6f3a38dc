"""`set_weight(engine, weight, force_reason)`: moving a canary up passes the canary gate
first (refused, or forced with a reason, both recorded); moving it down never asks."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from swiftdeploy.commands.canary import start_canary
from swiftdeploy.commands.weight import set_weight
from swiftdeploy.errors import BadInputError, PolicyDeniedError, StateError
from tests.commands.conftest import FAILING, Simulated


def failing_canary(simulated: Callable[..., Simulated]) -> Simulated:
    """A canary at 10% that has failed a fifth of its requests for two minutes."""
    project = simulated(FAILING)
    start_canary(project.engine, "v2", None)
    project.serve(120)
    return project


def test_a_healthy_canary_moves_up_and_its_step_counts_afresh(
    simulated: Callable[..., Simulated],
) -> None:
    project = simulated()
    start_canary(project.engine, "v2", None)
    project.serve(60)
    state = set_weight(project.engine, 30, None)
    assert state.canary_weight == 30
    assert project.world.tracks.routed_weight() == 30
    assert project.reasons()[-1] == "canary weight set to 30% by hand"
    assert state.evidence.steps[-1].weight == 30
    assert state.evidence.steps[-1].canary.requests == 0  # counted from the move on
    assert project.decisions()[-1]["requested"] == "weight 30"


def test_a_failing_canary_is_not_moved_up(simulated: Callable[..., Simulated]) -> None:
    project = failing_canary(simulated)
    with pytest.raises(PolicyDeniedError, match="canary policy refused weight 50"):
        set_weight(project.engine, 50, None)
    assert project.state().canary_weight == 10
    assert project.world.tracks.routed_weight() == 10
    refused = project.decisions()[-1]
    assert (refused["action"], refused["requested"]) == ("refused", "weight 50")


def test_forced_with_a_reason_it_moves_and_the_trail_says_who_and_why(
    simulated: Callable[..., Simulated],
) -> None:
    project = failing_canary(simulated)
    state = set_weight(project.engine, 50, "load test of the new cache")
    assert state.canary_weight == 50
    forced = project.decisions()[-1]
    assert forced["action"] == "forced weight 50"
    assert isinstance(forced["forced"], dict)
    assert forced["forced"]["reason"] == "load test of the new cache"
    assert forced["forced"]["against"] == "rollback"


def test_moving_down_never_asks_the_gate(simulated: Callable[..., Simulated]) -> None:
    project = failing_canary(simulated)
    asked = len(project.decisions())
    state = set_weight(project.engine, 0, None)
    assert state.canary_weight == 0
    assert project.world.tracks.routed_weight() == 0
    assert len(project.decisions()) == asked


def test_a_weight_outside_0_100_or_no_canary_is_refused(
    simulated: Callable[..., Simulated],
) -> None:
    project = simulated()
    with pytest.raises(StateError, match="no canary is running"):
        set_weight(project.engine, 20, None)
    start_canary(project.engine, "v2", None)
    before = project.state()
    with pytest.raises(BadInputError, match="weight 101 is outside 0-100"):
        set_weight(project.engine, 101, None)
    assert project.state() == before
