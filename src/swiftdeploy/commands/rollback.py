"""`swiftdeploy rollback`: the canary to 0% at once, then its replicas stopped."""

from __future__ import annotations

from swiftdeploy.fleet import Fleet
from swiftdeploy.rollout.actions import roll_back
from swiftdeploy.state import Phase, State


def rollback(fleet: Fleet, reason: str = "rolled back by hand") -> State:
    state = fleet.store.load()
    # An interrupted rollback is finished, not refused; so is a rollout whose CLI died
    # while starting its canary (a canary version, no replica recorded yet).
    if state.phase != Phase.ROLLING_BACK and state.canary_version is None:
        fleet.require_canary(state)
    state = fleet.reconcile(state)
    return roll_back(fleet, state, reason)
