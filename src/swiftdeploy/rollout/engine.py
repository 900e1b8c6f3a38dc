"""The progressive rollout loop: every tick is one idempotent step driven by the
persisted phase, so a CLI killed at any moment loses nothing (`resume` carries on).

A look counts what each track served since the previous look into the step's
evidence ledger, turns the ledger into statistics (`rollout.statistics`), asks the
canary policy, records the decision, and only then acts on it: rollback, hold, or
the next step. The policy decides; this module only obeys. A step still undecided at
its deadline holds for a person, with its evidence kept for `resume`.

Gating hooks (notify/hooks.py) are asked off this thread: `pre-rollout` before any
traffic moves, `confirm-traffic-increase` and `confirm-promotion` before a step that
passed moves on (the step keeps being looked at while it waits: harm still rolls back),
`post-rollout` and `rollback` after the end. Each tick takes the answers that arrived.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from swiftdeploy.audit.recorder import record_decision
from swiftdeploy.audit.vocabulary import ENDED_PHASES, HELD, HOLD, PROMOTE, ROLLBACK
from swiftdeploy.durations import format_duration
from swiftdeploy.errors import RuntimeProcessError
from swiftdeploy.fleet import Fleet
from swiftdeploy.loadgen import LoadRun
from swiftdeploy.manifest import Analysis, Hook, HookType, Step
from swiftdeploy.metrics.base import BlockHistory, Measurement, MetricsProvider
from swiftdeploy.notify.hooks import HookCall, HookCaller, HookContext, describe_answer
from swiftdeploy.policy.base import CANARY, Decision, PolicyEngine, Reason
from swiftdeploy.rollout.actions import promote_to_stable, roll_back
from swiftdeploy.rollout.inputs import canary_input
from swiftdeploy.rollout.looking import TRACKS, Track, counted_look, opened_evidence, step_summary
from swiftdeploy.rollout.statistics import Settings, Statistics, progress
from swiftdeploy.state import LastLook, Phase, State
from swiftdeploy.state.evidence import Dimension, Evidence, PassedBy
from swiftdeploy.state.model import HookAnswer, HookWait
from swiftdeploy.stats.dispersion import BLOCK_S, HISTORY_BLOCKS
from swiftdeploy.stats.split import split_disagrees

# The phases the loop stops in: the rollout ended, or none is under way.
IDLE_OR_ENDED = ENDED_PHASES | {Phase.IDLE}

# `interval: auto`: a look after about this many canary requests, so a busy service is
# judged within a few requests of the evidence and a quiet one is not polled for nothing.
LOOK_REQUESTS = 5.0
AUTO_INTERVAL_MAX_S = 2.0
AUTO_INTERVAL_FIRST_S = 1.0  # before the step has a canary rate to go by
# How far back the stable's history seeds its spread (stats.dispersion): five minutes
# see about a dozen bursts of a replica that has one a minute.
HISTORY_S = HISTORY_BLOCKS * BLOCK_S  # 300 s: as many blocks as make a spread known
# A gate that has not said yes is asked again at a look this long after its last answer:
# an approval is seen within seconds, and a receiver is not asked at every look.
HOOK_REASK_S = 5.0


@dataclass(frozen=True)
class Look:
    """One look at the current step: its numbers and the policy's decision on them."""

    state: State  # with this look's counts in its ledger
    elapsed_s: float
    canary: Measurement  # the step so far, from the ledger
    stable: Measurement
    statistics: Statistics
    decision: Decision
    policy_input: dict[str, Any]


@dataclass(frozen=True)
class TickReport:
    """What one tick did, for whoever follows the rollout (the live view, `--json`
    lines, CI): the state after it, and for a tick that looked, both tracks' step so
    far, the statistics, the policy's decision and the action taken."""

    state: State
    elapsed_s: float
    canary: Measurement | None = None
    stable: Measurement | None = None
    statistics: Statistics | None = None  # None: no look at this tick
    decision: Decision | None = None
    action: str = ""


@dataclass
class RolloutEngine:
    """The rollout's state machine, one idempotent step per tick (`tick`): from the
    persisted phase it looks (counts each track into the evidence ledger, assesses it,
    asks the canary policy), then acts (next step, hold, pause, promote, roll back),
    recording each decision and transition in the audit trail before making it. A
    crash between ticks loses nothing: the next tick resumes from the saved state."""

    fleet: Fleet
    metrics: MetricsProvider
    policy: PolicyEngine
    clock: Callable[[], float] = time.time
    sleep: Callable[[float], None] = time.sleep
    on_tick: Callable[[TickReport], None] = lambda report: None
    stop_requested: Callable[[], bool] = lambda: False
    skip_manual_pauses: bool = False  # `promote --all`
    # The driver's way: a step undecided at max_duration holds (an event for people) and
    # goes on looking, so later evidence can still decide it. The foreground loop
    # (Kubernetes, for now) stops at a hold instead.
    keep_looking_when_held: bool = False
    hooks: HookCaller | None = None  # the manifest's gating hooks (commands/context.py)
    _informed: set[tuple[str, str]] = field(default_factory=set)  # (rollout, hook) called
    _load: LoadRun | None = None
    _load_step: int | None = None

    def _transition(self, state: State, reason: str, event: str, **updates: Any) -> State:
        return self.fleet.transition(state, reason, event, **updates)

    def _progress(self, state: State, reason: str, event: str, **updates: Any) -> State:
        """A transition to (or within) the progressing phase: no pause, no pause message."""
        return self._transition(
            state, reason, event, phase=Phase.PROGRESSING, pause_kind=None, message=None, **updates
        )

    def begin(self, version: str, rollout_id: str | None = None) -> State:
        """Fix the latency bound from the stable's recent traffic, start the canary,
        and enter the first step with analysis on. `rollout_id`: chosen by whoever
        started the driver, so a driver restarted before this persisted starts it again
        rather than resuming an older one."""
        fleet = self.fleet
        state = fleet.reconcile(fleet.store.load())
        manifest = fleet.loaded.manifest
        state = self._progress(
            state,
            f"rollout of {version} started",
            "started",
            canary_version=version,
            canary_weight=0,
            step_index=0,
            rollout_id=rollout_id or new_rollout_id(),
            auto_advance=True,
            step_started_at=None,
            step_deadline=None,
            resume_at=None,
            evidence=self.new_evidence(),
            hooks={},
            awaiting=None,
        )
        try:
            state = fleet.ensure_track(state, "canary", version, manifest.strategy.canary.replicas)
        except RuntimeProcessError as exc:
            return self._never_ready(exc)
        return self._pre_rollout(self.canary_started(state))

    def canary_started(self, state: State) -> State:
        """The canary's replicas (re)started now: its warm-up begins, fixed from the
        manifest at this moment (`analysis.warmup`)."""
        warmup = self.fleet.loaded.manifest.strategy.canary.analysis.warmup
        evidence = state.evidence.warm_up(self.clock(), warmup.time, warmup.requests)
        return self.fleet.store.save(state.model_copy(update={"evidence": evidence}))

    def ensure_canary(self, state: State) -> State:
        """The canary replicas an interruption left missing, started and routed (their
        warm-up begins again); a canary that cannot be made ready again is rolled back."""
        before = {replica.name for replica in state.track("canary")}
        try:
            state = self.fleet.ensure_canary(state)
        except RuntimeProcessError as exc:
            return self._never_ready(exc)
        if {replica.name for replica in state.track("canary")} != before:
            state = self.canary_started(state)
        return state

    def _never_ready(self, exc: RuntimeProcessError) -> State:
        # The state on disk has the replica that failed (recorded before it started),
        # so the rollback drains and stops it with the others.
        return self.rollback(
            self.fleet.store.load(), f"the canary did not become ready: {exc.one_line()}"
        )

    def new_evidence(self) -> Evidence:
        """An empty ledger whose latency bound comes from the stable's recent traffic,
        read before any canary request exists."""
        manifest = self.fleet.loaded.manifest
        # how bursty the service already is, read first: a provider may keep no more
        # history than the reference window needs once it has measured that
        history = (
            self.metrics.blocks("stable", HISTORY_S, BLOCK_S)
            if isinstance(self.metrics, BlockHistory)
            else []
        )
        reference = self.metrics.measure("stable", manifest.metrics.window)
        return opened_evidence(reference, history, manifest.policy)

    def set_weight(self, state: State, weight: int, reason: str) -> State:
        """A weight a person set: the step goes on at it, its counts start afresh."""
        state = self._transition(state, reason, "weight", canary_weight=weight)
        self.fleet.apply_routes(state)
        return self.watch(state, state.step_index or 0, weight)

    def pause(self, state: State, reason: str) -> State:
        """A person holds the rollout at its weight: no looks, no max_duration clock,
        until `resume_held` (or promote, abort)."""
        return self._transition(
            state,
            reason,
            "paused",
            phase=Phase.PAUSED,
            pause_kind="operator",
            message=f"{reason}: `swiftdeploy resume` goes on",
        )

    def watch(self, state: State, index: int, weight: int) -> State:
        """A new ledger step at this weight (set by hand), counted from readings now."""
        evidence = state.evidence.open_step(index, weight, self.clock())
        return self._mark(self.fleet.store.save(state.model_copy(update={"evidence": evidence})))

    def enter_step(self, state: State, index: int, reason: str | None = None) -> State:
        """The one place a step is entered: by the rollout when the step before passed,
        by `promote` (the driver's, or by hand for a canary started by hand). The weight
        moves, and the step's counts start at readings taken after it moved."""
        step = self._steps()[index]
        now = self.clock()
        state = self._progress(
            state,
            reason or f"step {index + 1}: canary weight {step.weight}%",
            "step",
            step_index=index,
            canary_weight=step.weight,
            step_started_at=now,
            step_deadline=now + self._analysis_block(step).max_duration,
            resume_at=None,
            evidence=state.evidence.open_step(index, step.weight, now),
            awaiting=None,
        )
        self.fleet.apply_routes(state)
        return self._mark(state)

    def _mark(self, state: State) -> State:
        """Readings now, after the weight moved: the step's counts start here."""
        evidence = state.evidence
        for track in TRACKS:
            at = self.metrics.mark(track)
            if at is not None:
                evidence = evidence.marked(track, at)
        return self.fleet.store.save(state.model_copy(update={"evidence": evidence}))

    def resume_held(self, state: State) -> State:
        """Carry on a held step with its evidence, for another max_duration."""
        step = self._steps()[state.step_index or 0]
        return self._progress(
            state,
            "resumed: the step keeps its evidence and collects more",
            "resumed",
            step_deadline=self.clock() + self._analysis_block(step).max_duration,
        )

    # --- the loop ---------------------------------------------------------------

    def run(self, state: State) -> State:
        """Tick until the rollout ends, pauses for a person, or a stop is requested."""
        try:
            while state.phase not in IDLE_OR_ENDED and not self._waiting_for_person(state):
                state = self.tick(state)
                if state.phase in IDLE_OR_ENDED or self._waiting_for_person(state):
                    break
                if self.stop_requested():
                    break
                self.sleep(self.look_interval(state))
        finally:
            self._stop_load()
        return state

    def _waiting_for_person(self, state: State) -> bool:
        if state.phase != Phase.PAUSED:
            return False
        if state.pause_kind == "held":
            return not self.keep_looking_when_held
        return state.pause_kind in ("manual", "operator")

    def close(self) -> None:
        """Stop what the engine started for a step (its load generator), wait for the
        informational hooks in flight (bounded by their timeouts and retries) and record
        the answers, and write the looks the recorder holds back (audit/recorder.py)."""
        try:
            self._stop_load()
            if self.hooks is not None:
                self.hooks.wait()
                calls = self.hooks.answers()
                if calls:
                    self._keep_answers(self.fleet.store.load(), calls)
        finally:
            self.fleet.recorder.flush()

    def tick(self, state: State) -> State:
        state = self.collect_hooks(state)
        if state.phase == Phase.PROGRESSING or self._held_and_looking(state):
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

    def look(self, state: State) -> Look:
        """Count since the last look, assess the step, and ask the policy; acts on nothing."""
        index = state.step_index or 0
        analysis = (
            self._analysis_block(self._steps()[index]) if index < len(self._steps()) else None
        )
        now = self.clock()
        evidence = state.evidence
        latest: dict[Track, Measurement | None] = {}
        for track in TRACKS:
            since = evidence.marks.get(track)
            if since is None:  # no reading to count from yet (a failed mark): take one
                at = self.metrics.mark(track)
                if at is None:
                    latest[track] = Measurement.provider_error(
                        track, self.metrics.name, "no reading to count from could be taken"
                    )
                else:
                    evidence = evidence.marked(track, at)
                    latest[track] = None
                continue
            latest[track] = self.metrics.measure_since(track, since)
        settings = Settings.of(self.fleet.loaded.manifest.policy)
        evidence, statistics = counted_look(evidence, latest, settings)
        state = self.fleet.store.save(state.model_copy(update={"evidence": evidence}))
        started = state.step_started_at if state.step_started_at is not None else now
        elapsed = max(now - started, 0.0)
        step = evidence.current
        assert step is not None
        name = self.metrics.name
        canary = step_summary("canary", name, step.canary, started, now, latest["canary"])
        stable = step_summary("stable", name, step.stable, started, now, latest["stable"])
        policy_input = canary_input(
            policy=self.fleet.loaded.manifest.policy,
            analysis=analysis or self.fleet.loaded.manifest.strategy.canary.analysis,
            step_index=index,
            weight=state.canary_weight,
            elapsed_s=elapsed,
            canary=canary,
            stable=stable,
            canary_healthy=self.fleet.tracks.track_healthy(state, "canary"),
            statistics=statistics,
            hooks=state.hooks,
        )
        decision = self.policy.decide(CANARY, policy_input)
        return Look(state, elapsed, canary, stable, statistics, decision, policy_input)

    def record(self, look: Look, action: str, **fields: Any) -> None:
        record_decision(
            self.fleet.recorder,
            look.decision,
            CANARY,
            look.policy_input,
            {
                "canary": look.canary.model_dump(mode="json"),
                "stable": look.stable.model_dump(mode="json"),
            },
            dict(look.statistics),  # the record's JSON: the policy input's, as it is
            rollout_id=look.state.rollout_id,
            step_index=look.state.step_index,
            action=action,
            **fields,
        )

    def _analyse(self, state: State) -> State:
        index = state.step_index
        assert index is not None
        step = self._steps()[index]
        if state.step_started_at is None:
            # Waiting for the pre-rollout hooks, or interrupted between starting the
            # canary and entering the step: enter it once they said yes.
            return self._pre_rollout(state)
        drift = self.fleet.tracks.reconcile_split(state)
        if drift is not None:
            state = self.drifted(state, index, drift)
        self._ensure_load(index, self._analysis_block(step))
        look = split_checked(self.look(state))
        state = look.state
        verdict = look.decision.verdict
        action: str = verdict
        deadline = state.step_deadline
        holding = state.phase == Phase.PROGRESSING
        # A step that passed and waits for a hook's yes is no undecided step: it holds
        # for the hook (never `held` at max_duration), and only harm ends it.
        approving = state.awaiting is not None
        if holding and verdict == HOLD and deadline is not None and self.clock() >= deadline:
            action = HOLD if approving else HELD
        if approving and action != ROLLBACK:
            action = HOLD
        self.record(look, action)
        last = LastLook(
            at=self.clock(),
            action=action,
            reasons=tuple(reason.message for reason in look.decision.reasons),
            progress=tuple(progress(look.statistics, look.state.evidence)),
        )
        state = self.fleet.store.save(state.model_copy(update={"last_look": last}))
        report = TickReport(
            state, look.elapsed_s, look.canary, look.stable, look.statistics, look.decision, action
        )
        self.on_tick(report)
        summary = summarize_reasons(look.decision)
        if action == ROLLBACK:
            return self.rollback(state, summary or "rolled back by policy")
        if approving:
            return self.advance(state)  # asks the gate again; moves on once it says yes
        if action == HELD:
            return self._transition(
                state,
                f"held: {summary}",
                "held",
                phase=Phase.PAUSED,
                pause_kind="held",
                message=f"undecided after {format_duration(look.elapsed_s)}: {summary}",
            )
        if action == PROMOTE:
            return self._step_passed(state, step)
        return state

    def drifted(self, state: State, index: int, drift: str) -> State:
        """The split the traffic took was not the state's (the runtime restored it):
        what the step counted came from another split, so its evidence and its
        min_duration start again. Its deadline stays: a route that keeps drifting ends
        in a hold for a person, not in a step that never ends."""
        self.fleet.progress(f"warning: {drift}; step {index + 1} starts its evidence again")
        now = self.clock()
        state = self._transition(
            state,
            f"route drift: {drift}; the step's evidence starts again",
            "drift",
            step_started_at=now,
            evidence=state.evidence.open_step(index, state.canary_weight, now),
        )
        return self._mark(state)

    def _step_passed(self, state: State, step: Step) -> State:
        if step.pause == "manual" and not self.skip_manual_pauses:
            return self._transition(
                state,
                "step passed; waiting for `swiftdeploy promote`",
                "passed",
                phase=Phase.PAUSED,
                pause_kind="manual",
                message="paused: run `swiftdeploy promote` to continue",
            )
        if isinstance(step.pause, float) and step.pause > 0:
            return self._transition(
                state,
                f"step passed; pausing {format_duration(step.pause)}",
                "passed",
                phase=Phase.PAUSED,
                pause_kind="timed",
                resume_at=self.clock() + step.pause,
            )
        return self.advance(state)

    def advance(self, state: State, passed_by_hand: bool = False) -> State:
        """The next step, or the final promotion after the last one. By hand, the
        dimensions the step had not passed are marked so: they prove nothing later.
        A `confirm-traffic-increase` or `confirm-promotion` hook that has not said yes
        for this step holds it (looks go on) until it does."""
        if passed_by_hand and (current := state.evidence.current) is not None:
            passed: dict[Dimension, PassedBy] = {"errors": "hand", "latency": "hand"}
            evidence = state.evidence.looked({**passed, **current.passed})
            state = self.fleet.store.save(state.model_copy(update={"evidence": evidence}))
        steps = self._steps()
        index = state.step_index or 0
        next_index = index + 1
        gate: HookType = (
            "confirm-promotion" if next_index >= len(steps) else "confirm-traffic-increase"
        )
        waiting, _ = self._gate(state, gate, index)
        if waiting:
            return self._await(state, gate, index, waiting)
        self._stop_load()
        if next_index >= len(steps):
            return self.finish_promotion(state)
        return self.enter_step(state, next_index)

    def finish_promotion(self, state: State) -> State:
        self._stop_load()
        index = state.step_index  # the ended rollout's step: the state forgets it
        state = promote_to_stable(self.fleet, state.model_copy(update={"awaiting": None}))
        self._inform(state, "post-rollout", index, entered=True)
        return state

    def rollback(self, state: State, reason: str, aborted: bool = False) -> State:
        self._stop_load()
        # where it was rolled back (before step 1: a pre-rollout refusal, a canary
        # never ready), for the rollback hooks' payload; the state forgets it
        index, entered = state.step_index, state.step_started_at is not None
        state = roll_back(self.fleet, state.model_copy(update={"awaiting": None}), reason, aborted)
        self._inform(state, "rollback", index, entered)
        return state

    # --- gating hooks (notify/hooks.py) -------------------------------------------

    def collect_hooks(self, state: State) -> State:
        """The hook answers that arrived since the last tick: one `hook` audit record
        each, written here (the engine's thread), and the latest kept in the state."""
        calls = self.hooks.answers() if self.hooks is not None else []
        return self._keep_answers(state, calls) if calls else state

    def _keep_answers(self, state: State, calls: list[HookCall]) -> State:
        kept = dict(state.hooks)
        for call in calls:
            self.fleet.recorder.record("hook", **call.record_fields())
            if call.rollout_id == state.rollout_id:  # not a late answer to an older one
                kept[call.hook] = HookAnswer(
                    type=call.type, result=call.result, status=call.status, at=self.clock(),
                    answer=call.answer, error=call.error, step=call.step, asks=call.asks,
                )  # fmt: skip
        return self.fleet.store.save(state.model_copy(update={"hooks": kept}))

    def _pre_rollout(self, state: State) -> State:
        """The first step, once every `pre-rollout` hook answered 2xx; a refusal or no
        answer (after its retries) rolls back before the canary got any traffic."""
        waiting, refused = self._gate(state, "pre-rollout", 0)
        if refused is not None:
            name, answer = refused
            said = describe_answer(answer.status, answer.answer, answer.error)
            return self.rollback(state, f"pre-rollout hook {name} {said}")
        if waiting:
            return self._await(state, "pre-rollout", 0, waiting)
        return self.enter_step(state, 0)

    def _gate(
        self, state: State, kind: HookType, step: int
    ) -> tuple[list[Hook], tuple[str, HookAnswer] | None]:
        """The hooks of `kind` that have not said yes for `step` (each asked, or asked
        again HOOK_REASK_S after its last answer, unless a call is in flight), and a
        pre-rollout hook's final refusal."""
        if self.hooks is None:
            return [], None
        waiting: list[Hook] = []
        now = self.clock()
        for hook in self.hooks.of_type(kind):
            answer = state.hooks.get(hook.name)
            current = answer if answer is not None and answer.step == step else None
            if current is not None and current.ok:
                continue
            if kind == "pre-rollout" and current is not None:
                return waiting, (hook.name, current)  # asked once: no yes is a no
            waiting.append(hook)
            if self.hooks.in_flight(hook.name):
                continue
            if current is not None and now - current.at < HOOK_REASK_S:
                continue
            asks = current.asks + 1 if current is not None else 1
            entered = kind != "pre-rollout"
            self.hooks.start(hook, self._hook_context(state, step, asks, entered))
        return waiting, None

    def _await(self, state: State, kind: HookType, step: int, hooks: list[Hook]) -> State:
        """The rollout holds for these hooks' yes, saying so; a step that waited paused
        (for a person, or a timed pause) goes back to being looked at."""
        since = self.clock()
        if state.awaiting is not None and (state.awaiting.type, state.awaiting.step) == (
            kind,
            step,
        ):
            since = state.awaiting.since
        wait = HookWait(type=kind, hooks=tuple(hook.name for hook in hooks), step=step, since=since)
        message = waiting_message(state, wait)
        if state.phase != Phase.PROGRESSING:
            return self._transition(
                state,
                f"step {step + 1}: {message}",
                "resumed",
                phase=Phase.PROGRESSING,
                pause_kind=None,
                message=message,
                awaiting=wait,
            )
        if state.awaiting == wait and state.message == message:
            return state
        return self.fleet.store.save(
            state.model_copy(update={"awaiting": wait, "message": message})
        )

    def _inform(self, state: State, kind: HookType, index: int | None, entered: bool) -> None:
        """Call the informational hooks of `kind` once per rollout; never waited for.
        `index`, `entered`: the step the rollout ended at (not entered: before step 1)."""
        if self.hooks is None or state.rollout_id is None:
            return
        for hook in self.hooks.of_type(kind):
            key = (state.rollout_id, hook.name)
            if key in self._informed or hook.name in state.hooks:
                continue
            self._informed.add(key)
            context = self._hook_context(state, index or 0, entered=entered and index is not None)
            self.hooks.start(hook, context)

    def _hook_context(
        self, state: State, step: int, asks: int = 1, entered: bool = True
    ) -> HookContext:
        return HookContext(
            service=self.fleet.loaded.manifest.service.name,
            rollout_id=state.rollout_id or "",
            phase=state.phase.value,
            canary_version=state.canary_version,
            stable_version=state.stable_version,
            step=step,
            steps=len(self._steps()),
            weight=state.canary_weight,
            asks=asks,
            entered=entered,
        )

    def _held_and_looking(self, state: State) -> bool:
        return (
            self.keep_looking_when_held
            and state.phase == Phase.PAUSED
            and state.pause_kind == "held"
        )

    # --- helpers ------------------------------------------------------------------

    def _steps(self) -> list[Step]:
        return self.fleet.loaded.manifest.strategy.canary.steps

    def _analysis_block(self, step: Step) -> Analysis:
        return self.fleet.loaded.manifest.strategy.canary.analysis_for(step)

    def look_interval(self, state: State) -> float:
        """How long to wait before the next look (`interval`, or `auto` from the rate)."""
        if state.step_index is None or state.step_index >= len(self._steps()):
            return 1.0
        interval = self._analysis_block(self._steps()[state.step_index]).interval
        if interval != "auto":
            return interval
        floor = self.metrics.resolution_s
        step = state.evidence.current
        rate: float | None = None
        if step is not None and step.canary.requests > 0 and step.observed_s >= 1.0:
            rate = step.canary.requests / step.observed_s
        elif step is not None and state.evidence.reference_rps:
            rate = state.evidence.reference_rps * step.weight / 100  # what the split will send
        if not rate:
            return max(AUTO_INTERVAL_FIRST_S, floor)
        return min(max(LOOK_REQUESTS / rate, floor), max(AUTO_INTERVAL_MAX_S, floor))

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


SPLIT_RULE = "split_mismatch"


def split_checked(look: Look) -> Look:
    """The look held, with the reason, when the canary's counted share of requests
    disagrees with its weight beyond noise (stats/split.py): its evidence is not of
    this step's split. A rollback stands: failing requests fail at any split."""
    step = look.state.evidence.current
    if step is None or look.decision.verdict == "rollback":
        return look
    check = split_disagrees(step.canary.requests, step.stable.requests, step.weight)
    if check is None:
        return look
    reason = Reason(
        rule=SPLIT_RULE,
        message=f"the traffic does not follow the route: {check.words()}",
        observed=round(check.share, 4),
        threshold=step.weight / 100,
    )
    decided = look.decision
    decision = Decision(
        allow=False,
        verdict="hold",
        reasons=(*decided.reasons, reason),
        engine=decided.engine,
        decision_id=decided.decision_id,
        elapsed_ms=decided.elapsed_ms,
    )
    return replace(look, decision=decision)


def waiting_message(state: State, wait: HookWait) -> str:
    """What a rollout held for a hook waits for, with the last answer heard."""
    names = ", ".join(wait.hooks)
    what = "hook" if len(wait.hooks) == 1 else "hooks"
    if wait.type == "pre-rollout":
        why = "before the canary gets any traffic"
    else:
        why = f"step {wait.step + 1} passed; its looks go on meanwhile"
    heard = [
        f"{name} {'answered HTTP ' + str(answer.status) if answer.status else 'did not answer'}"
        for name in wait.hooks
        if (answer := state.hooks.get(name)) is not None and answer.step == wait.step
    ]
    last = f" (last: {'; '.join(heard)})" if heard else ""
    return f"waiting for the {wait.type} {what} {names} to answer 2xx{last}: {why}"


def new_rollout_id() -> str:
    return uuid.uuid4().hex[:12]


def summarize_reasons(decision: Decision) -> str:
    """The decision's reasons as one line, for messages and the state."""
    return "; ".join(reason.message for reason in decision.reasons)
