"""`swiftdeploy rollout`'s plan and outcome, and `promote` of an analysed rollout (the
rollout itself is run by its driver: commands/driver.py).

The loop itself is `rollout.engine`; its parts are built in `commands.context`.
"""

from __future__ import annotations

from swiftdeploy.commands.context import metrics_provider
from swiftdeploy.errors import HeldError, OperationalError, RolledBackError
from swiftdeploy.fleet import Fleet
from swiftdeploy.rollout.engine import RolloutEngine
from swiftdeploy.rollout.plan import Plan, plan
from swiftdeploy.state import Phase, State


def promote_analysed(engine: RolloutEngine, skip_pauses: bool) -> State:
    """A paused (or held) step goes on to the next one, with analysis from there on.
    The canary gate has already allowed it (`gate.canary_gate`)."""
    fleet = engine.fleet
    state = fleet.reconcile(fleet.store.load())
    if skip_pauses:
        engine.skip_manual_pauses = True
    if state.phase in (Phase.PAUSED, Phase.PROGRESSING):
        state = engine.advance(state, passed_by_hand=True)
    return engine.run(state)


def outcome(state: State) -> str:
    """The message for a rollout that stopped; raises for the non-zero exit codes."""
    if state.phase == Phase.ROLLED_BACK:
        raise RolledBackError(f"rolled back: {state.message}", hint="`swiftdeploy audit why`")
    if state.phase == Phase.PAUSED and state.pause_kind == "held":
        raise HeldError(
            f"held at step {(state.step_index or 0) + 1}: {state.message}",
            hint="its driver keeps collecting evidence and acts on it (where the CLI drives:"
            " `swiftdeploy resume` does); `promote` goes on without it; `rollback` stops",
        )
    if state.phase == Phase.PAUSED and state.pause_kind == "manual":
        return f"paused at step {(state.step_index or 0) + 1}: run `swiftdeploy promote` to go on"
    if state.phase == Phase.PAUSED and state.pause_kind == "operator":
        return f"paused at step {(state.step_index or 0) + 1} by a person: `swiftdeploy resume`"
    if state.phase == Phase.PROMOTED:
        return f"promoted: {state.stable_version} is stable"
    return f"stopped in phase {state.phase.value}: run `swiftdeploy resume` to carry on"


def plan_now(fleet: Fleet) -> Plan | None:
    """The plan at the service's traffic of the last metrics.window; None when nothing
    is deployed (no router to read)."""
    state = fleet.store.load()
    if not state.track("stable"):
        return None
    window = fleet.loaded.manifest.metrics.window
    reference = metrics_provider(fleet, keep_history=False).measure("stable", window)
    if reference.status == "provider_error":
        raise OperationalError(
            f"cannot read the service's traffic: {reference.detail}",
            hint="is it deployed? `swiftdeploy status` shows what runs",
        )
    return plan(fleet.loaded.manifest, reference)
