"""`swiftdeploy weight N`: set the canary's share of traffic by hand. Moving it up
passes the canary gate first; moving it down (less exposure) never waits."""

from __future__ import annotations

from swiftdeploy.commands.gate import canary_gate
from swiftdeploy.errors import BadInputError
from swiftdeploy.rollout.engine import RolloutEngine
from swiftdeploy.state import State


def set_weight(engine: RolloutEngine, weight: int, force_reason: str | None) -> State:
    if not 0 <= weight <= 100:
        raise BadInputError(f"weight {weight} is outside 0-100", hint="give a percentage")
    fleet = engine.fleet
    state = fleet.store.load()
    fleet.require_canary(state)
    state = fleet.ensure_platform(state)
    if weight > state.canary_weight:
        canary_gate(engine, state, f"weight {weight}", force_reason)
    return engine.set_weight(state, weight, f"canary weight set to {weight}% by hand")
