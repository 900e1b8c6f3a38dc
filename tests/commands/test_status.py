"""status's warning when the router's split is not the rollout's state's."""

from __future__ import annotations

from swiftdeploy.commands.status import split_warning
from swiftdeploy.state import Replica, State


def _state(weight: int, canary_ready: bool = True) -> State:
    replicas = (
        Replica(name="stable-0", track="stable", version="v1", port=9001, ready=True),
        Replica(name="canary-0", track="canary", version="v2", port=9002, ready=canary_ready),
    )
    return State(replicas=replicas, canary_weight=weight, canary_version="v2")


def test_a_split_other_than_the_states_is_said() -> None:
    # an admin set the route to 0/100 while the state says 10%
    said = split_warning(_state(10), 100)
    assert said is not None
    assert "sends the canary 100% but the rollout's state says 10%" in said


def test_the_states_split_or_an_unknown_one_is_not() -> None:
    assert split_warning(_state(10), 10) is None
    assert split_warning(_state(10), None) is None
    # a canary not (yet, or no longer) ready is routed nothing, whatever the weight
    assert split_warning(_state(10, canary_ready=False), 0) is None
