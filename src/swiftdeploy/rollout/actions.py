"""The two ways a canary ends, shared by the manual commands and the rollout engine.

Both are idempotent: after an interruption (the phase on disk says PROMOTING or
ROLLING_BACK) running them again finishes the job.
"""

from __future__ import annotations

from swiftdeploy.audit.vocabulary import ROLLBACK_PREFIX
from swiftdeploy.fleet import Fleet
from swiftdeploy.state import Phase, State


def promote_to_stable(fleet: Fleet, state: State) -> State:
    """All traffic to the canary, the stable replicas replaced one by one behind health
    checks with the canary's version, then the canary replicas stop."""
    version = state.canary_version
    assert version is not None
    if state.phase != Phase.PROMOTING:
        state = fleet.transition(
            state,
            f"promoting {version} to stable",
            event="promoting",
            phase=Phase.PROMOTING,
            canary_weight=100,
        )
    fleet.progress(f"promoting {version}: all traffic to the canary, replacing stable replicas")
    fleet.apply_routes(state)
    state = fleet.replace_stable(state, version)
    state = fleet.stop_canary(state)
    return fleet.transition(
        state,
        f"{version} promoted",
        event="promoted",
        phase=Phase.PROMOTED,
        auto_advance=False,
        message=f"{version} is stable",
    )


def roll_back(fleet: Fleet, state: State, reason: str, aborted: bool = False) -> State:
    """The canary to 0% at once, then its replicas drain and stop. `aborted`: a person
    asked for it (the event says so)."""
    if state.phase != Phase.ROLLING_BACK:
        state = fleet.transition(
            state,
            f"{ROLLBACK_PREFIX}{reason}",
            event="aborted" if aborted else "rolling-back",
            phase=Phase.ROLLING_BACK,
            canary_weight=0,
            message=reason,
        )
    fleet.progress(f"rolling back {state.canary_version}: canary weight 0%")
    fleet.apply_routes(state)
    state = fleet.stop_canary(state)
    return fleet.transition(
        state,
        "rolled back",
        event="rolled-back",
        phase=Phase.ROLLED_BACK,
        auto_advance=False,
        message=reason,
    )
