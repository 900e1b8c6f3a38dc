"""`swiftdeploy promote [--all]` of a canary started by hand: the next step, or every
step and the final switch, once the canary gate allows it."""

from __future__ import annotations

from swiftdeploy.commands.gate import canary_gate
from swiftdeploy.rollout.actions import promote_to_stable
from swiftdeploy.rollout.engine import RolloutEngine
from swiftdeploy.state import State


def promote(engine: RolloutEngine, to_the_end: bool, force_reason: str | None) -> State:
    fleet = engine.fleet
    state = fleet.store.load()
    fleet.require_canary(state)
    state = fleet.ensure_platform(state)
    canary_gate(engine, state, "promote --all" if to_the_end else "promote", force_reason)
    steps = fleet.loaded.manifest.strategy.canary.steps
    while True:
        next_index = (state.step_index or 0) + 1
        if next_index >= len(steps):
            return promote_to_stable(fleet, state)
        weight = steps[next_index].weight
        fleet.progress(f"step {next_index + 1}/{len(steps)}: canary weight {weight}%")
        state = engine.enter_step(state, next_index, f"promoted by hand to step {next_index + 1}")
        if not to_the_end:
            return state
