"""`swiftdeploy rollout VERSION`, `resume`, `abort`, and `promote` of an analysed rollout.

The wiring of the engine's dependencies (policy engine, metrics provider, statistics)
lives here; the loop itself is `rollout.engine`.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable

from swiftdeploy.errors import HeldError, OperationalError, RolledBackError, StateError
from swiftdeploy.fleet import Fleet
from swiftdeploy.metrics import ProviderDeps, create_provider
from swiftdeploy.metrics.base import MetricsProvider
from swiftdeploy.policy import engine_from_policy
from swiftdeploy.policy.base import PolicyEngine
from swiftdeploy.rollout.engine import RolloutEngine, TickReport
from swiftdeploy.rollout.state import Phase, State
from swiftdeploy.rollout.statistics import compare
from swiftdeploy.runtime.local import pid_alive
from swiftdeploy.tools import find_opa
from swiftdeploy.traffic.nginx import NginxRouter


def policy_engine(fleet: Fleet) -> PolicyEngine:
    """The manifest's engine; for `opa` without a URL, the project's own OPA server."""
    policy = fleet.loaded.manifest.policy
    url = None
    if policy.engine == "opa":
        url = fleet.ensure_opa(fleet.store.load())
    return engine_from_policy(
        policy, fleet.loaded.project_dir, url=url, opa_binary=find_opa() or "opa"
    )


def metrics_provider(fleet: Fleet, keep_history: bool = True) -> MetricsProvider:
    manifest = fleet.loaded.manifest
    router = fleet.router
    assert isinstance(router, NginxRouter)
    deps = ProviderDeps(
        settings=manifest.metrics,
        app_targets=fleet.metrics_targets,
        router_metrics_url=router.metrics_url,
        prometheus_url=lambda: fleet.ensure_prometheus(fleet.store.load()),
        client=fleet.http,
        # The policy applies min_requests itself, per step; the provider reports counts.
        min_requests=0,
        state_dir=fleet.state_dir,
        bootstrap_s=manifest.strategy.canary.analysis.interval,
        keep_history=keep_history,
    )
    return create_provider(manifest.metrics.provider, deps)


def build_engine(
    fleet: Fleet,
    policy: PolicyEngine,
    on_tick: Callable[[TickReport], None],
    stop_requested: Callable[[], bool],
) -> RolloutEngine:
    manifest = fleet.loaded.manifest
    return RolloutEngine(
        fleet=fleet,
        metrics=metrics_provider(fleet),
        policy=policy,
        statistics=lambda canary, stable, previous: compare(
            canary,
            stable,
            alpha=manifest.policy.alpha,
            settings=manifest.policy.statistics,
            previous=previous,
        ),
        on_tick=on_tick,
        stop_requested=stop_requested,
    )


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
        state = fleet.ensure_canary(state)
    if state.phase == Phase.PAUSED and state.pause_kind == "held":
        state = engine.retry_step(state)  # held at the limit: look again, from a fresh window
    return engine.run(state)


def promote_analysed(engine: RolloutEngine, skip_pauses: bool) -> State:
    """A paused (or held) step goes on to the next one, with analysis from there on."""
    fleet = engine.fleet
    state = fleet.reconcile(fleet.store.load())
    if skip_pauses:
        engine.skip_manual_pauses = True
    if state.phase in (Phase.PAUSED, Phase.PROGRESSING):
        state = engine.advance(state)
    return engine.run(state)


def outcome(state: State) -> str:
    """The message for a rollout that stopped; raises for the non-zero exit codes."""
    if state.phase == Phase.ROLLED_BACK:
        raise RolledBackError(f"rolled back: {state.message}", hint="`swiftdeploy audit why`")
    if state.phase == Phase.PAUSED and state.pause_kind == "held":
        raise HeldError(
            f"held at step {(state.step_index or 0) + 1}: {state.message}",
            hint="decide with `swiftdeploy promote` or `swiftdeploy rollback`",
        )
    if state.phase == Phase.PAUSED and state.pause_kind == "manual":
        return f"paused at step {(state.step_index or 0) + 1}: run `swiftdeploy promote` to go on"
    if state.phase == Phase.PROMOTED:
        return f"promoted: {state.stable_version} is stable"
    return f"stopped in phase {state.phase.value}: run `swiftdeploy resume` to carry on"


def abort(lock_holder: Callable[[], int | None], timeout: float = 60.0) -> int | None:
    """Stop a running rollout (SIGTERM: its current tick finishes) and wait for it."""
    pid = lock_holder()
    if pid is None or not pid_alive(pid):
        return None
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not pid_alive(pid) or lock_holder() != pid:
            return pid
        time.sleep(0.1)
    raise OperationalError(f"the rollout (pid {pid}) did not stop within {timeout:g}s")
