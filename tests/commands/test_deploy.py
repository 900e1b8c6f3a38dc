"""`deploy(fleet, version)`: a new stable version replaces the old one replica by
replica; the stable version again changes nothing; a running canary is refused. (The
first deploy on loopback, real processes and router, is in test_teardown.py.)"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from swiftdeploy.commands.canary import start_canary
from swiftdeploy.commands.deploy import deploy
from swiftdeploy.errors import StateError
from swiftdeploy.state import Phase
from tests.commands.conftest import Simulated


def test_a_new_version_replaces_every_stable_replica(
    simulated: Callable[..., Simulated],
) -> None:
    project = simulated()
    before = {r.name for r in project.state().track("stable")}
    state = deploy(project.fleet, "v2")
    assert (state.phase, state.stable_version) == (Phase.IDLE, "v2")
    stable = state.track("stable")
    assert [r.version for r in stable] == ["v2", "v2"]
    assert all(r.ready for r in stable)
    assert not before & {r.name for r in stable}
    assert project.reasons()[-1] == "v2 deployed as stable"
    assert project.state() == state  # saved


def test_the_stable_version_again_changes_nothing(simulated: Callable[..., Simulated]) -> None:
    project = simulated()
    before = project.state()
    assert deploy(project.fleet, "v1") == before
    assert project.said == ["v1 is already the stable version"]


def test_a_running_canary_is_refused_and_left_as_it_was(
    simulated: Callable[..., Simulated],
) -> None:
    project = simulated()
    running = start_canary(project.engine, "v2", None)
    with pytest.raises(StateError) as refused:
        deploy(project.fleet, "v3")
    assert refused.value.message == "a canary (v2) is running"
    assert "promote --all" in str(refused.value.hint)
    assert project.state() == running
