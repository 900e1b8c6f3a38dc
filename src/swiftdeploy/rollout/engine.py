"""The progressive rollout loop: every tick is one idempotent step driven by the
persisted phase, so a CLI killed at any moment loses nothing (`resume` carries on).

A tick measures both tracks over the current step, runs the sequential tests, asks
the canary policy, records the decision, and only then acts on it: rollback, hold,
or promote to the next step. The policy decides; this module only obeys.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from swiftdeploy.fleet import Fleet, record_decision
from swiftdeploy.load import LoadRun
from swiftdeploy.manifest import Analysis, Step
from swiftdeploy.metrics.base import Measurement, MetricsProvider
from swiftdeploy.policy.base import CANARY, Decision, PolicyEngine
from swiftdeploy.rollout.actions import promote_to_stable, roll_back
from swiftdeploy.rollout.inputs import canary_input
from swiftdeploy.rollout.state import Phase, State
from swiftdeploy.rollout.statistics import maxima

TERMINAL = frozenset({Phase.PROMOTED, Phase.ROLLED_BACK, Phase.FAILED, Phase.IDLE})


# (canary, stable, running e-value maxima of this step) -> statistics by test name
Statistics = Callable[
    [Measurement, Measurement, Mapping[str, tuple[float, float]]], dict[str, dict[str, Any]]
]


@dataclass(frozen=True)
class TickReport:
    state: State
    elapsed_s: float
    canary: Measurement | None = None
    stable: Measurement | None = None
    statistics: dict[str, dict[str, Any]] = field(default_factory=dict)
    decision: Decision | None = None
    action: str = ""


@dataclass
class RolloutEngine:
    fleet: Fleet
    metrics: MetricsProvider
    policy: PolicyEngine
    statistics: Statistics
    clock: Callable[[], float] = time.time
    sleep: Callable[[float], None] = time.sleep
    on_tick: Callable[[TickReport], None] = lambda report: None
    stop_requested: Callable[[], bool] = lambda: False
    skip_manual_pauses: bool = False  # `promote --all`
    _load: LoadRun | None = None
    _load_step: int | None = None

    def _transition(self, state: State, reason: str, **updates: Any) -> State:
        return self.fleet.transition(state, reason, **updates)

    def begin(self, version: str) -> State:
        """Start the canary at the first step with analysis on."""
        fleet = self.fleet
        state = fleet.reconcile(fleet.store.load())
        steps = self._steps()
        state = self._transition(
            state,
            f"rollout of {version} started",
            phase=Phase.PROGRESSING,
            canary_version=version,
            canary_weight=0,
            step_index=0,
            rollout_id=uuid.uuid4().hex[:12],
            analysis=True,
            step_started_at=None,
            resume_at=None,
            pause_kind=None,
            message=None,
        )
        state = fleet.start_track(
            state, "canary", version, fleet.loaded.manifest.strategy.canary.replicas
        )
        return self._enter_step(state, 0, steps[0])

    def retry_step(self, state: State) -> State:
        """Run the current step again from its start (after a hold at its limit)."""
        index = state.step_index or 0
        return self._enter_step(state, index, self._steps()[index])

    def _enter_step(self, state: State, index: int, step: Step) -> State:
        state = self._transition(
            state,
            f"step {index + 1}: canary weight {step.weight}%",
            phase=Phase.PROGRESSING,
            step_index=index,
            canary_weight=step.weight,
            step_started_at=self.clock(),
            resume_at=None,
            pause_kind=None,
            message=None,
            evidence_max={},
        )
        self.fleet.apply_routes(state)
        # A first look now anchors the step's window at its start.
        self.metrics.prime("canary")
        self.metrics.prime("stable")
        return state

    # --- the loop ---------------------------------------------------------------

    def run(self, state: State) -> State:
        """Tick until the rollout ends, pauses for a person, or a stop is requested."""
        try:
            while state.phase not in TERMINAL and not self._waiting_for_person(state):
                state = self.tick(state)
                if state.phase in TERMINAL or self._waiting_for_person(state):
                    break
                if self.stop_requested():
                    break
                self.sleep(self._interval(state))
        finally:
            self._stop_load()
        return state

    def _waiting_for_person(self, state: State) -> bool:
        return state.phase == Phase.PAUSED and state.pause_kind in ("manual", "held")

    def tick(self, state: State) -> State:
        if state.phase == Phase.PROGRESSING:
            return self._analyse(state)
        if state.phase == Phase.PAUSED and state.pause_kind == "timed":
            if state.resume_at is not None and self.clock() >= state.resume_at:
                return self.advance(state)
            return state
        if state.phase == Phase.PROMOTING:
            return self.finish_promotion(state)
        if state.phase == Phase.ROLLING_BACK:
            return self.rollback(state, state.message or "rollback resumed")
        return state

    def _analyse(self, state: State) -> State:
        index = state.step_index
        assert index is not None
        step = self._steps()[index]
        if state.step_started_at is None:
            # Interrupted between starting the canary and entering the step: enter it now.
            return self._enter_step(state, index, step)
        analysis = self._analysis(step)
        self._ensure_load(index, analysis)
        elapsed = max(self.clock() - state.step_started_at, 0.0)
        window = max(elapsed, 1.0)
        canary = self.metrics.measure("canary", window)
        stable = self.metrics.measure("stable", window)
        statistics = self.statistics(canary, stable, state.evidence_max)
        state = self.fleet.store.save(state.model_copy(update={"evidence_max": maxima(statistics)}))
        healthy = self._canary_healthy(state)
        policy_input = canary_input(
            thresholds=self.fleet.loaded.manifest.policy.thresholds,
            alpha=self._alpha(),
            analysis=analysis,
            step_index=index,
            weight=state.canary_weight,
            elapsed_s=elapsed,
            canary=canary,
            stable=stable,
            canary_healthy=healthy,
            statistics=statistics,
        )
        decision = self.policy.decide(CANARY, policy_input)
        verdict = decision.verdict
        action: str = verdict
        if verdict == "hold" and elapsed >= analysis.max_duration:
            # The policy decides by max_duration; when it cannot (an engine failure),
            # the manifest's on_timeout does, so nothing waits forever or promotes.
            action = "rollback" if analysis.on_timeout == "rollback" else "held"
        measurements = {
            "canary": canary.model_dump(mode="json"),
            "stable": stable.model_dump(mode="json"),
        }
        record_decision(
            self.fleet.recorder,
            decision,
            CANARY,
            policy_input,
            measurements,
            statistics,
            rollout_id=state.rollout_id,
            step_index=index,
            action=action,
        )
        self.on_tick(TickReport(state, elapsed, canary, stable, statistics, decision, action))
        summary = summarize_reasons(decision)
        if action == "rollback":
            return self.rollback(state, summary or "rolled back by policy")
        if action == "held":
            return self._transition(
                state,
                f"held: {summary}",
                phase=Phase.PAUSED,
                pause_kind="held",
                message=f"inconclusive at max_duration: {summary}",
            )
        if action == "promote":
            return self._step_passed(state, step)
        return state

    def _step_passed(self, state: State, step: Step) -> State:
        if step.pause == "manual" and not self.skip_manual_pauses:
            return self._transition(
                state,
                "step passed; waiting for `swiftdeploy promote`",
                phase=Phase.PAUSED,
                pause_kind="manual",
                message="paused: run `swiftdeploy promote` to continue",
            )
        if isinstance(step.pause, float) and step.pause > 0:
            return self._transition(
                state,
                f"step passed; pausing {step.pause:g}s",
                phase=Phase.PAUSED,
                pause_kind="timed",
                resume_at=self.clock() + step.pause,
            )
        return self.advance(state)

    def advance(self, state: State) -> State:
        """The next step, or the final promotion after the last one."""
        self._stop_load()
        steps = self._steps()
        next_index = (state.step_index or 0) + 1
        if next_index >= len(steps):
            return self.finish_promotion(state)
        return self._enter_step(state, next_index, steps[next_index])

    def finish_promotion(self, state: State) -> State:
        self._stop_load()
        return promote_to_stable(self.fleet, state)

    def rollback(self, state: State, reason: str) -> State:
        self._stop_load()
        return roll_back(self.fleet, state, reason)

    # --- helpers ------------------------------------------------------------------

    def _steps(self) -> list[Step]:
        return self.fleet.loaded.manifest.strategy.canary.steps

    def _analysis(self, step: Step) -> Analysis:
        return self.fleet.loaded.manifest.strategy.canary.analysis_for(step)

    def _alpha(self) -> float:
        return self.fleet.loaded.manifest.policy.alpha

    def _interval(self, state: State) -> float:
        if state.step_index is None:
            return 1.0
        return self._analysis(self._steps()[state.step_index]).interval

    def _canary_healthy(self, state: State) -> bool:
        processes = {p.name: p for p in self.fleet.runtime.processes()}
        down = set(self.fleet.router.current().down)
        for replica in state.track("canary"):
            info = processes.get(replica.name)
            if info is None or not info.running or replica.endpoint in down:
                return False
        return bool(state.track("canary"))

    def _ensure_load(self, step_index: int, analysis: Analysis) -> None:
        if analysis.load is None or self._load_step == step_index:
            return
        self._stop_load()
        load = analysis.load
        listen = self.fleet.loaded.manifest.traffic.listen
        self._load = LoadRun(
            f"http://{listen}{load.path}",
            seconds=analysis.max_duration,
            connections=load.concurrency,
            rate_per_connection=load.rps / load.concurrency,
        )
        self._load_step = step_index

    def _stop_load(self) -> None:
        if self._load is not None:
            self._load.stop()
        self._load = None
        self._load_step = None


def summarize_reasons(decision: Decision) -> str:
    """The decision's reasons as one line, for messages and the state."""
    return "; ".join(reason.message for reason in decision.reasons)
