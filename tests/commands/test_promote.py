"""`promote(engine, to_the_end, force_reason)` of a canary started by hand: the next
step, or every step and the switch to stable, once the canary gate allows it."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from swiftdeploy.commands.canary import start_canary
from swiftdeploy.commands.promote import promote
from swiftdeploy.errors import PolicyDeniedError, StateError
from swiftdeploy.state import Phase
from tests.commands.conftest import FAILING, Simulated


def test_promote_enters_the_next_step_only(simulated: Callable[..., Simulated]) -> None:
    project = simulated()
    start_canary(project.engine, "v2", None)
    project.serve(60)
    state = promote(project.engine, False, None)
    assert (state.phase, state.step_index, state.canary_weight) == (Phase.PROGRESSING, 1, 25)
    assert project.world.tracks.routed_weight() == 25
    assert project.said[-1] == "step 2/3: canary weight 25%"
    assert project.decisions()[-1]["requested"] == "promote"


def test_promote_all_goes_through_every_step_to_stable(
    simulated: Callable[..., Simulated],
) -> None:
    project = simulated()
    start_canary(project.engine, "v2", None)
    project.serve(60)
    state = promote(project.engine, True, None)
    assert (state.phase, state.stable_version, state.canary_version) == (
        Phase.PROMOTED,
        "v2",
        None,
    )
    assert [r.version for r in state.replicas] == ["v2", "v2"]  # stable only
    assert project.world.tracks.routed_weight() == 0
    assert [line for line in project.said if line.startswith("step ")] == [
        "step 2/3: canary weight 25%",
        "step 3/3: canary weight 50%",
    ]
    asked = [d for d in project.decisions() if d.get("requested")]
    assert [d["requested"] for d in asked] == ["promote --all"]  # one gate, before it all


def test_a_failing_canary_is_not_promoted(simulated: Callable[..., Simulated]) -> None:
    project = simulated(FAILING)
    started = start_canary(project.engine, "v2", None)
    project.serve(120)
    with pytest.raises(PolicyDeniedError, match="canary policy refused promote --all"):
        promote(project.engine, True, None)
    state = project.state()
    assert (state.step_index, state.canary_weight, state.stable_version) == (0, 10, "v1")
    assert state.rollout_id == started.rollout_id


def test_nothing_to_promote_without_a_canary(simulated: Callable[..., Simulated]) -> None:
    project = simulated()
    with pytest.raises(StateError, match="no canary is running"):
        promote(project.engine, False, None)
