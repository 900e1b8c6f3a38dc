"""`swiftdeploy rollout VERSION`, `resume`, `abort`, and `promote` of an analysed rollout.

The loop itself is `rollout.engine`; its parts are built in `wiring`.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Callable

from swiftdeploy.errors import HeldError, OperationalError, RolledBackError, StateError
from swiftdeploy.fleet import Fleet
from swiftdeploy.proc import pid_alive
from swiftdeploy.rollout.engine import RolloutEngine
from swiftdeploy.rollout.plan import Plan, plan
from swiftdeploy.state import Phase, State
from swiftdeploy.wiring import metrics_provider


def start(engine: RolloutEngine, version: str) -> State:
    fleet = engine.fleet
    fleet.require_canary_can_start(fleet.store.load(), version)
    return engine.run(engine.begin(version))


def resume(engine: RolloutEngine) -> State:
    fleet = engine.fleet
    state = fleet.store.load()
    if state.phase in (Phase.PROMOTED, Phase.ROLLED_BACK, Phase.IDLE):
        raise StateError(f"no rollout to resume (phase {state.phase.value})")
    if not state.analysis and state.phase not in (Phase.PROMOTING, Phase.ROLLING_BACK):
        raise StateError(
            "the canary was started by hand; move it with `swiftdeploy promote` or `weight`"
        )
    state = fleet.reconcile(state)
    if state.phase in (Phase.PROGRESSING, Phase.PAUSED):
        state = engine.ensure_canary(state)
    if state.phase == Phase.PAUSED and state.pause_kind == "held":
        state = engine.resume_held(state)  # the step keeps its evidence
    return engine.run(state)


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


# How long a rollout may take to finish its current look after SIGTERM; then SIGKILL.
ABORT_GRACE_S = 5.0


def abort(lock_holder: Callable[[], int | None], grace: float = ABORT_GRACE_S) -> int | None:
    """Stop a running rollout: SIGTERM lets its current look finish; a look that takes
    longer than `grace` (a canary stalling its metrics, say) gets SIGKILL, which is
    safe because every step is persisted before the next. Returns the pid stopped."""
    pid = lock_holder()
    if pid is None or not pid_alive(pid):
        return None
    os.kill(pid, signal.SIGTERM)
    if _gone(pid, lock_holder, grace):
        return pid
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    if _gone(pid, lock_holder, grace):
        return pid
    raise OperationalError(f"the rollout (pid {pid}) did not stop even after SIGKILL")


def _gone(pid: int, lock_holder: Callable[[], int | None], within: float) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if not pid_alive(pid) or lock_holder() != pid:
            return True
        time.sleep(0.1)
    return False


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
