"""`swiftdeploy promote [--all]`: the next step, or every step and the final switch."""

from __future__ import annotations

from swiftdeploy.fleet import Fleet
from swiftdeploy.rollout.state import Phase, State


def promote(fleet: Fleet, to_the_end: bool) -> State:
    state = fleet.store.load()
    fleet.require_canary(state)
    state = fleet.ensure_platform(state)
    steps = fleet.loaded.manifest.strategy.canary.steps
    while True:
        next_index = (state.step_index or 0) + 1
        if next_index >= len(steps):
            return finalize(fleet, state)
        weight = steps[next_index].weight
        fleet.progress(f"step {next_index + 1}/{len(steps)}: canary weight {weight}%")
        state = fleet.store.save(
            state.model_copy(
                update={
                    "step_index": next_index,
                    "canary_weight": weight,
                    "phase": Phase.PROGRESSING,
                }
            )
        )
        fleet.apply_routes(state)
        if not to_the_end:
            return state


def finalize(fleet: Fleet, state: State) -> State:
    """The canary version becomes stable: all traffic to the canary, the stable replicas
    replaced one by one behind health checks, then the canary replicas stop."""
    version = state.canary_version
    assert version is not None
    fleet.progress(f"promoting {version}: all traffic to the canary, replacing stable replicas")
    state = fleet.store.save(
        state.model_copy(update={"canary_weight": 100, "phase": Phase.PROMOTING})
    )
    fleet.apply_routes(state)
    state = fleet.replace_stable(state, version)
    state = fleet.stop_canary(state)
    return fleet.store.save(state.model_copy(update={"phase": Phase.PROMOTED}))
