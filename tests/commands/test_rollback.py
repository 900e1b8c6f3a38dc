"""`rollback(fleet)`: the canary to 0% at once, then its replicas stopped; a rollback
an interruption cut short is finished, not refused; no canary, nothing to roll back."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from swiftdeploy.commands.canary import start_canary
from swiftdeploy.commands.rollback import rollback
from swiftdeploy.errors import StateError
from swiftdeploy.state import Phase
from tests.commands.conftest import Simulated


def test_the_canary_is_unrouted_and_stopped_the_stable_untouched(
    simulated: Callable[..., Simulated],
) -> None:
    project = simulated()
    stable = project.state().track("stable")
    start_canary(project.engine, "v2", 40)
    state = rollback(project.fleet, "the new cache misbehaves")
    assert (state.phase, state.canary_weight, state.canary_version) == (
        Phase.ROLLED_BACK,
        0,
        None,
    )
    assert not state.track("canary")
    assert state.track("stable") == stable
    assert project.world.tracks.routed_weight() == 0
    assert state.message == "the new cache misbehaves"


def test_a_rollback_cut_short_is_finished(simulated: Callable[..., Simulated]) -> None:
    project = simulated()
    started = start_canary(project.engine, "v2", None)
    # the CLI died after the rollback's first transition, before the canary stopped
    project.world.store.save(started.model_copy(update={"phase": Phase.ROLLING_BACK}))
    state = rollback(project.fleet)
    assert state.phase == Phase.ROLLED_BACK
    assert not state.track("canary")


def test_no_canary_is_refused(simulated: Callable[..., Simulated]) -> None:
    project = simulated()
    before = project.state()
    with pytest.raises(StateError, match="no canary is running"):
        rollback(project.fleet)
    assert project.state() == before
