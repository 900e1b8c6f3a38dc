"""`swiftdeploy rollback`: the canary to 0% at once, then its replicas stopped."""

from __future__ import annotations

from swiftdeploy.fleet import Fleet
from swiftdeploy.rollout.state import Phase, State


def rollback(fleet: Fleet) -> State:
    state = fleet.store.load()
    fleet.require_canary(state)
    state = fleet.ensure_platform(state)
    fleet.progress(f"rolling back {state.canary_version}: canary weight 0%")
    state = fleet.store.save(
        state.model_copy(update={"canary_weight": 0, "phase": Phase.ROLLING_BACK})
    )
    fleet.apply_routes(state)
    state = fleet.stop_canary(state)
    return fleet.store.save(state.model_copy(update={"phase": Phase.ROLLED_BACK}))
