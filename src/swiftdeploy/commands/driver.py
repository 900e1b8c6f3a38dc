"""The rollout's driver: the one process that looks, decides and acts for a service's
rollout, run by the project's supervisor so that it outlives the terminal that started
it and is restarted if it dies.

`start_driver` hands a rollout to it; `drive` is its loop; `ask` is how any terminal
steers it (`promote`, `pause`, `resume`, `abort`, `weight N`): a request in the state
directory (`state.control`) that the driver takes between looks, acts on, records as
the person's, and answers.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

from swiftdeploy.errors import (
    ExitCode,
    LockedError,
    OperationalError,
    StateError,
    SwiftDeployError,
)
from swiftdeploy.lock import lock_holder
from swiftdeploy.manifest import LoadedManifest
from swiftdeploy.proc import ProcessSpec, pid_alive
from swiftdeploy.runtime.base import DRIVER_PROCESS
from swiftdeploy.state import Phase, State
from swiftdeploy.state.control import Answer, ControlDir, DriverInfo, Request, Verb

if TYPE_CHECKING:
    # the engine, the fleet and the gates are imported where the driver uses them: a
    # person's request (`abort`) loads none of them (scipy alone takes seconds on a busy
    # machine)
    from swiftdeploy.fleet import Fleet, Progress
    from swiftdeploy.rollout.engine import RolloutEngine

PROGRAM = DRIVER_PROCESS
T = TypeVar("T")
# How often a waiting driver checks for requests: `abort` acts within about this.
POLL_S = 0.1
# A waiting person's CLI gives up on an answer after this (a look can take a few
# seconds when a provider is slow).
ANSWER_TIMEOUT_S = 60.0
# A driver that keeps dying is not restarted forever: after this many restarts of one
# rollout it stops and says so (`status` shows no driver).
MAX_RESTARTS = 20
# A person's command (`weight`, say) may hold the project lock for a moment.
LOCK_WAIT_S = 30.0


# --- who drives ------------------------------------------------------------------------


@dataclass(frozen=True)
class DriverStatus:
    """Who drives the service's rollout, as `status` says it."""

    pid: int | None  # None: no driver runs
    since: float | None
    restarts: int
    last_look_at: float | None
    exited: str | None  # why the last driver stopped

    @property
    def alive(self) -> bool:
        return self.pid is not None


def driver_status(loaded: LoadedManifest, state: State) -> DriverStatus:
    control = ControlDir(loaded.state_dir)
    info = control.driver()
    holder = lock_holder(loaded.state_dir)
    mine = info is not None and info.rollout_id == state.rollout_id
    last_look = state.last_look.at if state.last_look else None
    if info is not None and mine and holder == info.pid and pid_alive(info.pid):
        return DriverStatus(info.pid, info.first_started_at, info.restarts, last_look, None)
    exited = info.exited if info is not None and mine else None
    return DriverStatus(None, None, info.restarts if info and mine else 0, last_look, exited)


def driving(state: State) -> bool:
    """A rollout that needs a driver: analysed, and neither finished nor idle."""
    return state.analysis and not _ended(state)


def _ended(state: State) -> bool:
    """The rollout is in a phase it ends in (the engine's TERMINAL)."""
    from swiftdeploy.rollout.engine import TERMINAL

    return state.phase in TERMINAL


def start_driver(fleet: Fleet, rollout_id: str, version: str | None) -> None:
    """Hand the rollout to a driver under the project's supervisor. `version`: a new
    rollout of it with this id; None: carry on the persisted one. The caller's
    environment goes with it (the manifest's secrets, the audit key's home)."""
    argv = [sys.executable, "-m", "swiftdeploy.cli", "drive", "-f", str(fleet.loaded.path)]
    argv += ["--rollout", rollout_id] + (["--start", version] if version else [])
    fleet.processes.stop(PROGRAM)  # a finished driver's program, if any
    fleet.processes.start(
        ProcessSpec(name=PROGRAM, argv=argv, env=dict(os.environ), restart="unexpected")
    )


def wait_for_driver(loaded: LoadedManifest, rollout_id: str, timeout_s: float = 60.0) -> State:
    """Until the driver has taken the rollout (its first transition is saved), or has
    stopped with a reason; raises when it did neither in time."""
    from swiftdeploy.runtime import backend

    control = ControlDir(loaded.state_dir)
    store = backend(loaded.manifest.runtime).state_store(loaded)

    def taken() -> State | None:
        state = store.load()
        if state.rollout_id == rollout_id:
            return state
        info = control.driver()
        if info is not None and info.rollout_id == rollout_id and info.exited:
            raise StateError(f"the rollout did not start: {info.exited}")
        return None

    return _poll(loaded, taken, timeout_s, "the driver did not start the rollout")


def _poll(
    loaded: LoadedManifest, done: Callable[[], T | None], timeout_s: float, failure: str
) -> T:
    """`done()` every 0.1 s until it gives a value (or raises); after `timeout_s`, an
    error pointing at the driver's log."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = done()
        if found is not None:
            return found
        time.sleep(0.1)
    raise OperationalError(
        f"{failure} within {timeout_s:.0f}s",
        hint=f"see {loaded.state_dir / 'logs' / (PROGRAM + '.log')}",
    )


def stop_driver(loaded: LoadedManifest) -> None:
    """Stop the project's driver, if one runs (it finishes its look first): for
    `teardown`, which stops everything. The rollout's state stays as it was."""
    from swiftdeploy.runtime import backend

    processes = backend(loaded.manifest.runtime).process_manager(loaded)
    if processes.is_running():
        processes.stop(PROGRAM)


def wait_for_lock(loaded: LoadedManifest, timeout_s: float = 60.0) -> None:
    """Until a driver holds the project (it waits for the starter's lock first)."""
    control = ControlDir(loaded.state_dir)
    since = time.time()  # an exit saved before this was the previous driver's

    def holding() -> bool | None:
        info = control.driver()
        if info is not None and not info.exited and lock_holder(loaded.state_dir) == info.pid:
            return True
        if info is not None and info.exited and info.heartbeat_at >= since:
            raise StateError(f"the driver stopped: {info.exited}")
        return None

    _poll(loaded, holding, timeout_s, "no driver took the rollout")


def driver_restarting(loaded: LoadedManifest) -> bool:
    """Whether the supervisor runs the driver's program: where no driver holds the
    rollout, one is starting (restarted after it died) and takes requests once it does."""
    from swiftdeploy.runtime import backend

    processes = backend(loaded.manifest.runtime).process_manager(loaded).processes()
    return any(
        p.name == PROGRAM and p.state in ("STARTING", "RUNNING", "BACKOFF") for p in processes
    )


# --- following from any terminal ---------------------------------------------------------


def follow_ends(state: State, rollout_id: str | None, to_the_end: bool) -> bool:
    """Whether a follower is done: the rollout ended (or another replaced it), a step
    waits for `promote`, or (to the end, for CI's exit code 4) a step holds."""
    if state.rollout_id != rollout_id or _ended(state) or not state.analysis:
        return True
    if state.phase == Phase.PAUSED and state.pause_kind == "manual":
        return True
    return to_the_end and state.phase == Phase.PAUSED and state.pause_kind == "held"


class DriverWatch:
    """Raises once no driver has run the rollout for `grace_s` (the supervisor restarts
    a dead one within seconds; longer means it gave up or the supervisor is gone)."""

    def __init__(self, loaded: LoadedManifest, grace_s: float) -> None:
        self.loaded = loaded
        self.grace_s = grace_s
        self.gone_since: float | None = None

    def check(self, state: State) -> None:
        status = driver_status(self.loaded, state)
        if status.alive:
            self.gone_since = None
            return
        now = time.monotonic()
        if self.gone_since is None:
            self.gone_since = now
        elif now - self.gone_since > self.grace_s:
            raise OperationalError(
                f"no driver runs rollout {state.rollout_id}: "
                + (status.exited or "it died and was not restarted"),
                hint="`swiftdeploy resume` starts one; `swiftdeploy rollback` ends it",
            )


# --- steering from any terminal ------------------------------------------------------


def ask(loaded: LoadedManifest, verb: Verb, **fields: object) -> Answer | None:
    """Ask the running driver to act; its answer, or None when no driver runs (the
    caller acts itself). Raises when a driver took the request and did not answer."""
    control = ControlDir(loaded.state_dir)
    info = control.driver()
    holder = lock_holder(loaded.state_dir)
    if info is None or info.exited or holder != info.pid or not pid_alive(info.pid):
        return None
    request = control.submit(verb, **fields)
    deadline = time.monotonic() + ANSWER_TIMEOUT_S
    while time.monotonic() < deadline:
        answer = control.wait_answer(request, timeout_s=0.5)
        if answer is not None:
            return answer
        if lock_holder(loaded.state_dir) is None and control.withdraw(request):
            return None  # the driver stopped before taking it: act without it
    control.withdraw(request)
    raise OperationalError(
        f"the driver (pid {info.pid}) did not answer `{verb}` within {ANSWER_TIMEOUT_S:.0f}s",
        hint="`swiftdeploy status` shows whether it still looks",
    )


# --- the driver ------------------------------------------------------------------------


class _Stop:
    """SIGTERM (the supervisor stopping it, `teardown`): finish the look, then exit."""

    def __init__(self) -> None:
        self.requested = False
        signal.signal(signal.SIGTERM, self._set)
        signal.signal(signal.SIGINT, self._set)

    def _set(self, signum: int, frame: object) -> None:
        self.requested = True


def drive(loaded: LoadedManifest, rollout_id: str, version: str | None, progress: Progress) -> int:
    """The driver's whole life: take the lock, start or carry on the rollout, look and
    act on requests until it ends. Returns the process's exit code: 0 whenever it
    stopped on purpose (the supervisor restarts it only when it died)."""
    from swiftdeploy.wiring import open_fleet, project_locks

    control = ControlDir(loaded.state_dir)
    stop = _Stop()
    deadline = time.monotonic() + LOCK_WAIT_S
    while True:
        try:
            with project_locks(loaded):
                fleet = open_fleet(loaded, progress)
                try:
                    return _drive(fleet, control, rollout_id, version, stop)
                finally:
                    fleet.close()
        except LockedError as exc:
            other = control.driver()
            holder = lock_holder(loaded.state_dir)
            if other is not None and other.pid == holder and other.pid != os.getpid():
                return 0  # another driver has it: this one is not needed
            if time.monotonic() > deadline or stop.requested:
                # a person's command holds the project for long: exit 1, so the
                # supervisor tries again later rather than orphan the rollout
                progress(f"driver: {exc.one_line()}")
                return 1
            time.sleep(0.5)  # a person's command holds it for a moment


def _drive(
    fleet: Fleet, control: ControlDir, rollout_id: str, version: str | None, stop: _Stop
) -> int:
    from swiftdeploy.wiring import policy_engine, rollout_engine

    state = fleet.store.load()
    restarted = state.rollout_id == rollout_id
    if not restarted and version is None:
        _exited(control, rollout_id, "no such rollout to carry on")
        return 0
    previous = control.driver()
    restarts = 0
    first = time.time()
    if restarted and previous is not None and previous.rollout_id == rollout_id:
        restarts, first = previous.restarts + 1, previous.first_started_at
        if previous.exited is None and restarts > MAX_RESTARTS:
            _exited(control, rollout_id, f"gave up after {MAX_RESTARTS} restarts")
            return 0
    info = DriverInfo(
        pid=os.getpid(),
        rollout_id=rollout_id,
        started_at=time.time(),
        first_started_at=first,
        restarts=restarts,
        heartbeat_at=time.time(),
    )
    control.save_driver(info)
    fleet.recorder.record(
        "driver",
        event="restarted" if restarted else "started",
        pid=os.getpid(),
        rollout_id=rollout_id,
        restarts=restarts,
    )
    policy = policy_engine(fleet)
    engine = rollout_engine(fleet, policy)
    engine.keep_looking_when_held = True
    outcome = "finished"
    try:
        for request in control.interrupted():
            control.answer(request, _answer_interrupted(request))
        if restarted:
            state = _carry_on(engine, fleet.reconcile(fleet.store.load()))
        else:
            assert version is not None
            try:
                fleet.require_canary_can_start(state, version)
            except SwiftDeployError as exc:
                _exited(control, rollout_id, exc.one_line())
                return 0
            state = engine.begin(version, rollout_id)
        state = _loop(engine, control, info, state, stop)
        if not state.analysis or _ended(state):
            outcome = f"the rollout ended: {state.phase.value}"
        else:
            outcome = "stopped (SIGTERM); `swiftdeploy resume` carries on"
        return 0
    except SwiftDeployError as exc:
        outcome = f"stopped on an error: {exc.one_line()}"
        raise
    finally:
        policy.close()
        # the held looks go out with the exit record; a trail that cannot take them
        # has already stopped the driver (the error above says so)
        with contextlib.suppress(SwiftDeployError):
            engine.close()
            fleet.recorder.record(
                "driver", event="exited", pid=os.getpid(), rollout_id=rollout_id, outcome=outcome
            )
        if outcome.startswith(("the rollout ended", "stopped (SIGTERM)")):
            _exited(control, rollout_id, outcome)


def _carry_on(engine: RolloutEngine, state: State) -> State:
    """What a restarted driver does first: the canary's replicas as the state says,
    then the loop picks up the persisted phase."""
    if state.phase in (Phase.PROGRESSING, Phase.PAUSED):
        state = engine.ensure_canary(state)
    return state


def _loop(
    engine: RolloutEngine, control: ControlDir, info: DriverInfo, state: State, stop: _Stop
) -> State:
    while not stop.requested:
        state = serve_requests(engine, control, state)
        if _ended(state) or not state.analysis:
            break
        if not _waiting(engine, state):
            state = engine.tick(state)
            control.save_driver(info.model_copy(update={"heartbeat_at": time.time()}))
            if _ended(state):
                break
        if _waiting(engine, state):
            # nothing is looked at until someone asks: the step's load generator stops
            # (as when the CLI drove and exited at a pause) and starts with the next look
            engine.close()
        interval = 1.0 if _waiting(engine, state) else engine.look_interval(state)
        deadline = time.monotonic() + interval
        while time.monotonic() < deadline and not stop.requested:
            if control.pending():
                break
            time.sleep(POLL_S)
    return state


def _waiting(engine: RolloutEngine, state: State) -> bool:
    """Paused for a person: nothing to look at until someone asks."""
    return state.phase == Phase.PAUSED and state.pause_kind in ("manual", "operator")


def serve_requests(engine: RolloutEngine, control: ControlDir, state: State) -> State:
    """Act on the people's requests, oldest first, each answered (refused or failed
    with the error's message and exit code); the state after them."""
    for request in control.pending():
        control.take(request)
        try:
            state, answer = _act(engine, state, request)
        except SwiftDeployError as exc:
            answer = Answer(
                id=request.id,
                result="refused" if exc.exit_code == ExitCode.DENIED else "failed",
                message=exc.one_line(),
                exit_code=int(exc.exit_code),
                hint=exc.hint,
            )
            state = engine.fleet.store.load()
        control.answer(request, answer)
    return state


def _answer_interrupted(request: Request) -> Answer:
    return Answer(
        id=request.id,
        result="failed",
        message=f"the driver restarted while acting on `{request.verb}`: it may be done",
        exit_code=int(ExitCode.OPERATIONAL),
        hint="`swiftdeploy status` shows where the rollout stands",
    )


def _act(engine: RolloutEngine, state: State, request: Request) -> tuple[State, Answer]:
    """One person's request, recorded as theirs before it is acted on."""
    from swiftdeploy.commands.gate import canary_gate

    fleet = engine.fleet
    by = request.requested_by
    because = f": {request.reason}" if request.reason else ""
    fleet.recorder.record(
        "request",
        rollout_id=state.rollout_id,
        verb=request.verb,
        requested_by=by,
        reason=request.reason,
        weight=request.weight,
        step_index=state.step_index,
        phase=state.phase.value,
    )

    def done(after: State, message: str) -> tuple[State, Answer]:
        return after, Answer(id=request.id, result="done", message=message)

    if request.verb == "abort":
        after = engine.rollback(state, f"aborted by {by}{because}", aborted=True)
        return done(after, f"aborted by {by}: the canary is at 0% and stopped")
    if request.verb == "pause":
        if state.phase == Phase.PAUSED and state.pause_kind in ("operator", "manual"):
            return done(state, f"already paused at step {(state.step_index or 0) + 1}")
        after = engine.pause(state, f"paused by {by}{because}")
        return done(after, f"paused at step {(after.step_index or 0) + 1}, {after.canary_weight}%")
    if request.verb == "resume":
        if state.phase != Phase.PAUSED or state.pause_kind not in ("operator", "held"):
            raise StateError(
                f"nothing to resume: the rollout is {_where(state)}",
                hint="`swiftdeploy promote` moves a step that passed and waits",
            )
        # as `resume` by hand always did: what the platform lost while the step held
        # (an OPA or Prometheus stopped) is started again before the step goes on
        state = _carry_on(engine, fleet.reconcile(state))
        after = engine.resume_held(state)
        return done(after, f"resumed at step {(after.step_index or 0) + 1}")
    if request.verb == "promote":
        action = "promote --all" if request.to_the_end else "promote"
        force_reason = request.reason if request.force else None
        canary_gate(engine, state, action, force_reason)
        engine.skip_manual_pauses = engine.skip_manual_pauses or request.to_the_end
        after = engine.advance(state, passed_by_hand=True)
        return done(after, f"promoted by {by}: {_where(after)}")
    assert request.verb == "weight"
    assert request.weight is not None
    weight = request.weight
    force_reason = request.reason if request.force else None
    if weight > state.canary_weight:
        canary_gate(engine, state, f"weight {weight}", force_reason)
    after = engine.set_weight(state, weight, f"canary weight set to {weight}% by {by}{because}")
    return done(after, f"weight set by {by}: {_where(after)}")


def _where(state: State) -> str:
    if _ended(state):
        return state.phase.value
    step = (state.step_index or 0) + 1
    pause = f", {state.pause_kind} pause" if state.phase == Phase.PAUSED else ""
    return f"{state.phase.value} at step {step}, canary {state.canary_weight}%{pause}"


def _exited(control: ControlDir, rollout_id: str, why: str) -> None:
    info = control.driver()
    now = time.time()
    if info is None or info.rollout_id != rollout_id:
        info = DriverInfo(pid=os.getpid(), rollout_id=rollout_id, started_at=now,
                          first_started_at=now)  # fmt: skip
    control.save_driver(info.model_copy(update={"exited": why, "heartbeat_at": now}))
