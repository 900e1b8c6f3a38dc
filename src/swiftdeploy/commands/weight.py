"""`swiftdeploy weight N`: set the canary's share of traffic by hand."""

from __future__ import annotations

from swiftdeploy.errors import BadInputError
from swiftdeploy.fleet import Fleet
from swiftdeploy.rollout.state import State


def set_weight(fleet: Fleet, weight: int) -> State:
    if not 0 <= weight <= 100:
        raise BadInputError(f"weight {weight} is outside 0-100", hint="give a percentage")
    state = fleet.store.load()
    fleet.require_canary(state)
    state = fleet.ensure_platform(state)
    state = fleet.store.save(state.model_copy(update={"canary_weight": weight}))
    fleet.apply_routes(state)
    return state
