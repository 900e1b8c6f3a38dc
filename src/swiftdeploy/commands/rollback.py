"""`swiftdeploy rollback`: the canary to 0% at once, then its replicas stopped."""

from __future__ import annotations

from swiftdeploy.fleet import Fleet
from swiftdeploy.rollout.actions import roll_back
from swiftdeploy.state import Phase, State


def rollback(fleet: Fleet, reason: str = "rolled back by hand") -> State:
    state = fleet.store.load()
    if state.phase != Phase.ROLLING_BACK:  # an interrupted rollback is finished, not refused
        fleet.require_canary(state)
    state = fleet.reconcile(state)
    return roll_back(fleet, state, reason)
