"""The rollout's driver: the one process that looks, decides and acts for a service's
rollout, run by the project's supervisor so that it outlives the terminal that started
it and is restarted if it dies.

`start_driver` hands a rollout to it; `drive` is its loop; `ask` is how any terminal
steers it (`promote`, `pause`, `resume`, `abort`, `weight N`): a request in the state
directory (`state.control`) that the driver takes between looks, acts on, records as
the person's, and answers.

On Kubernetes the driver runs in the cluster instead (`drive_controller`, one
long-running process per service, a Deployment that `swiftdeploy kube install`
applies): it holds the service's Lease for its life, takes requests from ConfigMaps
(`runtime/kubernetes/control.py`), starts rollouts on request, resumes one in progress
when it (re)starts, and rides out an API server that is away. The same `serve_requests`
and `_loop` drive it, so both drivers act alike.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, TypeVar

from swiftdeploy.durations import format_duration
from swiftdeploy.errors import (
    ExitCode,
    LockedError,
    OperationalError,
    StateError,
    SwiftDeployError,
    TransientError,
)
from swiftdeploy.lock import lock_holder
from swiftdeploy.manifest import LoadedManifest
from swiftdeploy.proc import ProcessSpec, pid_alive
from swiftdeploy.runtime.base import DRIVER_PROCESS
from swiftdeploy.state import Phase, State
from swiftdeploy.state.control import (
    Answer,
    ControlChannel,
    ControlDir,
    DriverInfo,
    Request,
    Verb,
)

if TYPE_CHECKING:
    # the engine, the fleet and the gates are imported where the driver uses them: a
    # person's request (`abort`) loads none of them (scipy alone takes seconds on a busy
    # machine)
    from swiftdeploy.fleet import Fleet, Progress
    from swiftdeploy.notify.deliver import Notifier
    from swiftdeploy.notify.outbox import TextStore
    from swiftdeploy.notify.secrets import Secrets
    from swiftdeploy.rollout.engine import RolloutEngine
    from swiftdeploy.runtime.kubernetes.control import ConfigMapControl

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
# A driver in the cluster killed: its successor takes the Lease once it expires (15 s).
CLUSTER_GONE_S = 45.0
CLUSTER_CHECK_S = 2.0


# --- who drives ------------------------------------------------------------------------


@dataclass(frozen=True)
class DriverStatus:
    """Who drives the service's rollout, as `status` says it."""

    pid: int | None  # None: no driver runs
    since: float | None
    restarts: int
    last_look_at: float | None
    exited: str | None  # why the last driver stopped
    holder: str | None = None  # a driver in the cluster: its Lease identity

    @property
    def alive(self) -> bool:
        return self.pid is not None


def driver_status(loaded: LoadedManifest, state: State) -> DriverStatus:
    if in_cluster(loaded):
        return _cluster_status(loaded, state)
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
    return state.auto_advance and not _ended(state)


def _ended(state: State) -> bool:
    """The rollout is in a phase the engine's loop stops in (ended, or idle)."""
    from swiftdeploy.rollout.engine import IDLE_OR_ENDED

    return state.phase in IDLE_OR_ENDED


def start_driver(fleet: Fleet, rollout_id: str, version: str | None) -> None:
    """Hand the rollout to a driver under the project's supervisor. `version`: a new
    rollout of it with this id; None: carry on the persisted one. The caller's
    environment, and nothing of the supervisor's, is the driver's (the manifest's
    secrets, the audit key's home): a secret missing from it stops the start here, in
    one line (exit 2), before anything changes."""
    from swiftdeploy.notify.secrets import resolve_secrets
    from swiftdeploy.runtime.launch import OWN_ENV

    resolve_secrets(fleet.loaded)
    argv = [sys.executable, "-m", "swiftdeploy.cli", "drive", "-f", str(fleet.loaded.path)]
    argv += ["--rollout", rollout_id] + (["--start", version] if version else [])
    env = {**os.environ, OWN_ENV: "1"}
    fleet.processes.stop(PROGRAM)  # a finished driver's program, if any
    fleet.processes.start(ProcessSpec(name=PROGRAM, argv=argv, env=env, restart="unexpected"))


def wait_for_driver(loaded: LoadedManifest, rollout_id: str, timeout_s: float = 60.0) -> State:
    """Until the driver has taken the rollout (its first transition is saved), or has
    stopped with a reason; raises when it did neither in time."""
    from swiftdeploy.commands.context import state_store

    control = ControlDir(loaded.state_dir)
    store = state_store(loaded)

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
        f"{failure} within {format_duration(timeout_s)}",
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
    if state.rollout_id != rollout_id or _ended(state) or not state.auto_advance:
        return True
    if state.phase == Phase.PAUSED and state.pause_kind == "manual":
        return True
    return to_the_end and state.phase == Phase.PAUSED and state.pause_kind == "held"


class DriverWatch:
    """Raises once no driver has run the rollout for `grace_s` (the supervisor restarts
    a dead one within seconds; longer means it gave up or the supervisor is gone)."""

    def __init__(self, loaded: LoadedManifest, grace_s: float) -> None:
        self.loaded = loaded
        # in the cluster, a successor takes a dead driver's Lease once it expires
        self.cluster = in_cluster(loaded)
        self.grace_s = max(grace_s, CLUSTER_GONE_S) if self.cluster else grace_s
        self.gone_since: float | None = None
        self.checked_at = 0.0

    def check(self, state: State) -> None:
        if self.cluster and time.monotonic() - self.checked_at < CLUSTER_CHECK_S:
            return  # two API calls: not at every poll of a follower
        self.checked_at = time.monotonic()
        try:
            status = driver_status(self.loaded, state)
        except OperationalError:
            if not self.cluster:
                raise
            return  # the API server away, or refusing while it starts: nothing known now

        if status.alive:
            self.gone_since = None
            return
        now = time.monotonic()
        if self.gone_since is None:
            self.gone_since = now
        elif now - self.gone_since > self.grace_s:
            if self.cluster:
                raise no_driver(self.loaded)
            raise OperationalError(
                f"no driver runs rollout {state.rollout_id}: "
                + (status.exited or "it died and was not restarted"),
                hint="`swiftdeploy resume` starts one; `swiftdeploy rollback` ends it",
            )


# --- steering from any terminal ------------------------------------------------------


def ask(loaded: LoadedManifest, verb: Verb, **fields: object) -> Answer | None:
    """Ask the running driver to act; its answer, or None when no driver runs (the
    caller acts itself). Raises when a driver took the request and did not answer."""
    if in_cluster(loaded):
        return ask_cluster(loaded, verb, **fields)
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
        f"the driver (pid {info.pid}) did not answer `{verb}` within"
        f" {format_duration(ANSWER_TIMEOUT_S)}",
        hint="`swiftdeploy status` shows whether it still looks",
    )


# --- the driver ------------------------------------------------------------------------


class _Stop:
    """SIGTERM (the supervisor stopping it, `teardown`): finish the look, then exit."""

    def __init__(self) -> None:
        self.requested = False
        # raises once the driver must stop at once (its Lease found lost): its waits
        # call it too, so no wait outlives the Lease
        self.halt: Callable[[], None] = lambda: None
        signal.signal(signal.SIGTERM, self._set)
        signal.signal(signal.SIGINT, self._set)

    def _set(self, signum: int, frame: object) -> None:
        self.requested = True

    def is_set(self) -> bool:
        return self.requested


def drive(loaded: LoadedManifest, rollout_id: str, version: str | None, progress: Progress) -> int:
    """The driver's whole life: take the lock, start or carry on the rollout, look and
    act on requests until it ends. Returns the process's exit code: 0 whenever it
    stopped on purpose (the supervisor restarts it only when it died)."""
    from swiftdeploy.commands.context import command_context

    control = ControlDir(loaded.state_dir)
    stop = _Stop()
    deadline = time.monotonic() + LOCK_WAIT_S
    while True:
        try:
            # the driver records itself (`driver` records), not a person's command
            with command_context(loaded, progress, lock=True, record_command=False) as context:
                return _drive(context.fleet, control, rollout_id, version, stop, progress)
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
    fleet: Fleet,
    control: ControlDir,
    rollout_id: str,
    version: str | None,
    stop: _Stop,
    progress: Progress,
) -> int:
    state = fleet.store.load()
    if state.rollout_id != rollout_id and version is None:
        _exited(control, rollout_id, "no such rollout to carry on")
        return 0
    try:
        secrets = driver_secrets(fleet.loaded)
        notifier = open_notifier(fleet, progress, secrets)
    except SwiftDeployError as exc:  # a secret missing: nothing is started
        progress(f"driver: {exc.one_line()}")
        _exited(control, rollout_id, exc.one_line())
        return 0
    try:
        return _drive_notifying(fleet, control, rollout_id, version, stop, notifier, secrets)
    finally:
        notifier.stop()


def _drive_notifying(
    fleet: Fleet,
    control: ControlDir,
    rollout_id: str,
    version: str | None,
    stop: _Stop,
    notifier: Notifier,
    secrets: Secrets,
) -> int:
    from swiftdeploy.commands.context import policy_engine, rollout_engine

    state = fleet.store.load()
    restarted = state.rollout_id == rollout_id
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
    _announce(control, notifier, fleet, info, restarted)
    policy = policy_engine(fleet)
    engine = rollout_engine(fleet, policy, secrets=secrets)
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
        state = _loop(engine, control, info, state, stop, notifier=notifier)
        if not state.auto_advance or _ended(state):
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
            # the driver exits with its rollout: what it recorded goes out first (a
            # stopped one waits a moment only; the next driver delivers the rest)
            from swiftdeploy.notify.deliver import STOP_DRAIN_S

            ended = outcome.startswith("the rollout ended")
            notifier.drain(fleet.recorder, None if ended else STOP_DRAIN_S, stop.is_set)
        if outcome.startswith(("the rollout ended", "stopped (SIGTERM)")):
            _exited(control, rollout_id, outcome)


def outbox_text(loaded: LoadedManifest) -> TextStore:
    """Where the notifications outbox is kept: a file in the state directory, or on
    Kubernetes the ConfigMap `<svc>-swiftdeploy-outbox`."""
    if in_cluster(loaded):
        from swiftdeploy.runtime.kubernetes import kube_of
        from swiftdeploy.runtime.kubernetes.outbox import ConfigMapText

        return ConfigMapText(kube_of(loaded), loaded.manifest)
    from swiftdeploy.notify.outbox import FileText

    return FileText(loaded.state_dir)


def notified_trail(loaded: LoadedManifest) -> Path:
    """The trail file the delivery threads read: the driver's own copy of the cluster's
    on Kubernetes, else the project's."""
    if in_cluster(loaded):
        from swiftdeploy.commands.cluster_trail import driver_trail

        return driver_trail(loaded)
    from swiftdeploy.commands.context import audit_settings

    return audit_settings(loaded).path


def driver_secrets(loaded: LoadedManifest) -> Secrets:
    """Every secret the manifest names (the sinks' and the hooks'), read once when the
    driver starts (on Kubernetes, one read of each Secret) and given to both the notifier
    and the engine, so they cannot disagree. A missing one raises before anything starts
    (in the cluster a later miss would hold a session, retrying forever)."""
    from swiftdeploy.notify.secrets import resolve_secrets

    return resolve_secrets(loaded)


def _announce(
    control: ControlChannel,
    notifier: Notifier,
    fleet: Fleet,
    info: DriverInfo,
    restarted: bool,
    **holder: str | None,
) -> None:
    """The driver's record of itself saved, delivery started before its first record (a
    new sink starts at the end), and its start recorded (`holder` on Kubernetes)."""
    control.save_driver(info)
    notifier.start()
    fleet.recorder.record(
        "driver",
        event="restarted" if restarted else "started",
        pid=info.pid,
        **holder,
        rollout_id=info.rollout_id,
        restarts=info.restarts,
    )


def open_notifier(fleet: Fleet, progress: Progress, secrets: Secrets) -> Notifier:
    """The manifest's notification sinks with the driver's secrets; not started. No
    sink: a notifier that does nothing."""
    from swiftdeploy.notify.deliver import Notifier
    from swiftdeploy.notify.outbox import NoText, OutboxStore

    loaded = fleet.loaded
    if not loaded.manifest.notifications.sinks:
        nothing = OutboxStore(NoText())
        return Notifier(loaded.manifest, notified_trail(loaded), nothing, secrets, progress)

    def say(line: str) -> None:
        progress(f"driver: {secrets.redact(line)}")  # never a URL or a token

    outbox = OutboxStore(outbox_text(loaded))
    return Notifier(loaded.manifest, notified_trail(loaded), outbox, secrets, say)


def _carry_on(engine: RolloutEngine, state: State) -> State:
    """What a restarted driver does first: the canary's replicas as the state says,
    then the loop picks up the persisted phase."""
    if state.phase in (Phase.PROGRESSING, Phase.PAUSED):
        state = engine.ensure_canary(state)
    return state


def _loop(
    engine: RolloutEngine,
    control: ControlChannel,
    info: DriverInfo,
    state: State,
    stop: _Stop,
    poll_s: float = POLL_S,
    notifier: Notifier | None = None,
) -> State:
    while not stop.requested:
        if notifier is not None:
            # the delivery threads never write the trail: their dead letters are
            # recorded here, between looks
            notifier.record_dead_letters(engine.fleet.recorder)
        state = serve_requests(engine, control, state)
        if _ended(state) or not state.auto_advance:
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
            time.sleep(poll_s)
    return state


def _waiting(engine: RolloutEngine, state: State) -> bool:
    """Paused for a person: nothing to look at until someone asks."""
    return state.phase == Phase.PAUSED and state.pause_kind in ("manual", "operator")


def serve_requests(engine: RolloutEngine, control: ControlChannel, state: State) -> State:
    """Act on the people's requests, oldest first, each answered (refused or failed
    with the error's message and exit code); the state after them."""
    for request in control.pending():
        if not control.take(request):
            continue  # withdrawn, or another driver took it
        try:
            state, answer = _act(engine, state, request)
        except TransientError:
            raise  # the API server is away: the request stays taken (`interrupted`)
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

    if request.verb == "start":
        return done(_begin(engine, state, request), f"rollout {request.rollout_id} started")
    if request.verb == "abort" and not state.track("canary"):
        return done(state, "nothing to abort: no canary is running")
    if request.verb != "abort" and not driving(state):
        # a driver in the cluster serves requests between rollouts too
        raise StateError(
            f"no rollout to {request.verb} (phase {state.phase.value})",
            hint="`swiftdeploy rollout VERSION` starts one",
        )
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
    if state.awaiting is not None and state.awaiting.type == "pre-rollout":
        # no step yet, nothing to look at: the canary gets traffic after the hook's yes
        return state, _held_for_hooks(engine, request, state, "nothing moved: ")
    if request.verb == "promote":
        action = "promote --all" if request.to_the_end else "promote"
        force_reason = request.reason if request.force else None
        canary_gate(engine, state, action, force_reason)
        engine.skip_manual_pauses = engine.skip_manual_pauses or request.to_the_end
        after = engine.advance(state, passed_by_hand=True)
        if after.awaiting is not None and not _ended(after):
            # the step passed, and a confirm hook has not said yes: not promoted (yet)
            return after, _held_for_hooks(engine, request, after)
        return done(after, f"promoted by {by}: {_where(after)}")
    assert request.verb == "weight"
    assert request.weight is not None
    weight = request.weight
    force_reason = request.reason if request.force else None
    if weight > state.canary_weight:
        canary_gate(engine, state, f"weight {weight}", force_reason)
    after = engine.set_weight(state, weight, f"canary weight set to {weight}% by {by}{because}")
    waiting = f"; {_awaiting(engine, after)}" if after.awaiting is not None else ""
    return done(after, f"weight set by {by}: {_where(after)}{waiting}")


def _awaiting(engine: RolloutEngine, state: State) -> str:
    assert state.awaiting is not None
    return state.awaiting.describe(state.hooks, engine.clock())


def _held_for_hooks(
    engine: RolloutEngine, request: Request, state: State, prefix: str = ""
) -> Answer:
    """A move a gating hook holds: refused for now with the hold's exit code, saying
    what it waits for; the hook's 2xx moves the rollout on by itself."""
    assert state.awaiting is not None
    if state.awaiting.type == "pre-rollout":
        then = "the first step starts once it answers 2xx (anything else rolls back)"
    else:
        then = "the rollout moves on once it answers 2xx (asked again every few seconds)"
    return Answer(
        id=request.id,
        result="refused",
        message=prefix + _awaiting(engine, state),
        exit_code=int(ExitCode.HELD),
        hint=f"{then}; `swiftdeploy status` shows the wait, `swiftdeploy abort` ends it",
    )


def _begin(engine: RolloutEngine, state: State, request: Request) -> State:
    """A rollout started at a person's request (the driver in the cluster): the gates
    the CLI runs on one host, then the rollout's first step."""
    from swiftdeploy.commands.gate import infrastructure_gate

    if request.version is None or request.rollout_id is None:
        raise StateError("a start request needs a version and a rollout id")
    if driving(state):
        raise StateError(
            f"rollout {state.rollout_id} of {state.canary_version} is running",
            hint="`swiftdeploy attach` follows it; `swiftdeploy abort` ends it",
        )
    from swiftdeploy.commands.validate import preflight

    fleet = engine.fleet
    preflight(fleet.loaded)  # `validate`'s checks, with the driver's rights
    infrastructure_gate(fleet.loaded, engine.policy, fleet.recorder, "canary")
    fleet.require_canary_can_start(fleet.reconcile(state), request.version)
    return engine.begin(request.version, request.rollout_id)


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


# --- the driver in the cluster ------------------------------------------------------------

# How often the driver in the cluster lists requests (one API call): `abort` acts within it.
CLUSTER_POLL_S = 0.2
# Between rollouts, its heartbeat (`status` names it; the Lease says it is alive).
IDLE_HEARTBEAT_S = 5.0
# An API server that is away: the driver holds and asks again after these waits.
BACKOFF_FIRST_S = 0.5
BACKOFF_MAX_S = 5.0
# A refusal that is not transient is asked again less often (it is logged once).
REFUSED_MAX_S = 30.0
# A state the trail refuses is looked at again this often (someone may restore it).
REFUSED_POLL_S = 2.0
# A person's request no driver takes within this is withdrawn, and the CLI says so.
TAKE_TIMEOUT_S = 15.0
# Standby: a driver whose Lease another holds asks again this often.
STANDBY_S = 2.0
# A CLI waiting through an API server that is away asks again this often.
AWAY_POLL_S = 0.25
# A Lease held by a driver that has not yet saved its record: how long a CLI waits for it
# (the driver reads its trail, secrets and state in between: about a second when well).
STARTING_WAIT_S = 10.0


def in_cluster(loaded: LoadedManifest) -> bool:
    """Whether the service's rollouts are run by a driver in the cluster (Kubernetes)."""
    from swiftdeploy.runtime import backend

    return bool(getattr(backend(loaded.manifest.runtime), "CLUSTER_DRIVER", False))


def cluster_control(loaded: LoadedManifest) -> ConfigMapControl:
    from swiftdeploy.runtime.kubernetes import control_channel

    return control_channel(loaded)


def no_driver(loaded: LoadedManifest) -> OperationalError:
    manifest = loaded.manifest
    return OperationalError(
        f"no driver runs for {manifest.service.name} in namespace "
        f"{manifest.kubernetes.namespace}: `swiftdeploy kube install`",
        hint="it starts the driver's Deployment; `swiftdeploy status` says who drives",
    )


def _cluster_status(loaded: LoadedManifest, state: State) -> DriverStatus:
    info = cluster_control(loaded).running_driver()
    last_look = state.last_look.at if state.last_look else None
    if info is None:
        gone = "none runs in the cluster (`swiftdeploy kube install` starts one)"
        return DriverStatus(None, None, 0, last_look, gone)
    restarts = info.restarts if info.rollout_id == state.rollout_id else 0
    return DriverStatus(info.pid, info.first_started_at, restarts, last_look, None, info.holder)


def driver_installed(control: ConfigMapControl, starting_s: float = STARTING_WAIT_S) -> bool:
    """A driver said it runs and has not said it stopped: it runs, or is restarting
    (killed, its successor waiting for the Lease), and will take requests. A Lease held
    without such a record is a driver starting (it takes the Lease, then saves its
    record): waited for up to `starting_s`, asking again every `AWAY_POLL_S`."""
    deadline = time.monotonic() + starting_s
    while True:
        info = control.driver()
        if info is not None and info.exited is None:
            return True
        if control.holder() is None or time.monotonic() >= deadline:
            return False  # nobody holds the Lease, or its holder never said it drives
        time.sleep(AWAY_POLL_S)


def ask_cluster(loaded: LoadedManifest, verb: Verb, **fields: object) -> Answer:
    """A person's request to the driver in the cluster, and its answer; one line saying
    so when no driver runs or none takes the request in time."""
    control = cluster_control(loaded)
    if not driver_installed(control):
        raise no_driver(loaded)
    request = control.submit(verb, **fields)
    started = time.monotonic()
    while True:
        answer = control.wait_answer(request, timeout_s=0.5)
        if answer is not None:
            return answer
        waited = time.monotonic() - started
        if waited > TAKE_TIMEOUT_S and control.withdraw(request):
            raise no_driver(loaded)  # nobody took it: it is gone again
        if waited > ANSWER_TIMEOUT_S:
            raise OperationalError(
                f"the driver took `{verb}` and did not answer within"
                f" {format_duration(ANSWER_TIMEOUT_S)}",
                hint="`swiftdeploy status` shows whether it still looks",
            )


class AwayWait(Protocol):
    """A follower's patience with an API server that is away (the CLI says so)."""

    def waits(self, exc: OperationalError) -> bool:
        """Whether to wait through this error (else it is raised)."""
        ...

    def back(self) -> None:
        """The API server answers again."""
        ...


def start_in_cluster(
    loaded: LoadedManifest,
    version: str,
    rollout_id: str,
    away: AwayWait | None = None,
    timeout_s: float = 120.0,
) -> State | Answer:
    """Ask the driver in the cluster to start a rollout: the state once the rollout is
    under way (its first transition saved), or the driver's refusal. Once the request
    is in, an API server that goes away is waited through (`away`): the driver holds
    meanwhile, and the time away does not count against the timeouts."""
    from swiftdeploy.commands.context import state_store

    control = cluster_control(loaded)
    if not driver_installed(control):
        raise no_driver(loaded)
    store = state_store(loaded)
    request = control.submit("start", version=version, rollout_id=rollout_id)
    started = time.monotonic()
    while True:
        tried = time.monotonic()
        try:
            answer = control.wait_answer(request, timeout_s=0.25)
            if answer is not None and answer.result != "done":
                return answer
            state = store.load()
        except OperationalError as exc:
            if away is None or not away.waits(exc):
                raise
            time.sleep(AWAY_POLL_S)
            started += time.monotonic() - tried
            continue
        if away is not None:
            away.back()
        if state.rollout_id == rollout_id:
            return state
        waited = time.monotonic() - started
        if waited > TAKE_TIMEOUT_S and control.withdraw(request):
            raise no_driver(loaded)
        if waited > timeout_s:
            raise OperationalError(
                f"the driver did not start the rollout within {format_duration(timeout_s)}"
            )


class _Outage:
    """The API server away (transport errors, 5xx, 429): the driver holds with backoff,
    changes nothing, and records the outage, its start and end, once it is back."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.since: float | None = None
        self.error = ""
        self.retries = 0
        self.away = False  # the API server did not answer (not only refused)

    def hold(self, exc: SwiftDeployError, stop: _Stop) -> None:
        transient = isinstance(exc, TransientError)
        if self.since is None:
            self.since = time.time()
        if exc.one_line() != self.error:  # said once per new error, not at every retry
            self.error = exc.one_line()
            away = "the API server is away: " if transient else ""
            self.progress(f"driver: holding, {away}{self.error}")
        self.away = self.away or transient
        longest = BACKOFF_MAX_S if transient else REFUSED_MAX_S
        self.retries += 1
        _pause(stop, min(longest, BACKOFF_FIRST_S * 2 ** (self.retries - 1)))

    def over(self, fleet: Fleet, rollout_id: str | None) -> None:
        """Called once the driver works again (a look, a request listing)."""
        if self.since is None:
            return
        ended = time.time()
        fleet.recorder.record(
            "driver",
            # `outage`: the API server did not answer; `stalled`: it refused (say, a
            # Role missing) and the driver held until it did not
            event="outage" if self.away else "stalled",
            rollout_id=rollout_id,
            started_at=self.since,
            ended_at=ended,
            duration_s=round(ended - self.since, 3),
            retries=self.retries,
            error=self.error,
        )
        self.progress(f"driver: working again after {format_duration(ended - self.since)}")
        self.since, self.retries, self.error, self.away = None, 0, "", False


def drive_controller(loaded: LoadedManifest, progress: Progress) -> int:
    """The driver in the cluster: one process per service for its whole life. It waits
    for the service's Lease (a standby while another driver holds it), then holds it,
    resumes a rollout in progress, serves requests and drives rollouts until SIGTERM.
    Returns 0 when stopped, 1 when it lost the Lease (it stopped before its next write)."""
    from swiftdeploy.commands.context import command_context

    stop = _Stop()
    outage = _Outage(progress)
    waiting_said = False
    while not stop.requested:
        held = False
        try:
            with command_context(loaded, progress, lock=True, record_command=False) as context:
                held = True  # a LockedError from now on: the Lease was lost
                _control(context.fleet, stop, outage, progress)
                return 0
        except LockedError as exc:
            if held:
                progress(f"driver: {exc.one_line()}")
                return 1
            if not waiting_said:
                progress(f"driver: standing by: {exc.one_line()}")
                waiting_said = True
            time.sleep(STANDBY_S)
        except TransientError as exc:
            outage.hold(exc, stop)  # the Lease could not be asked for: again later
    return 0


def _control(fleet: Fleet, stop: _Stop, outage: _Outage, progress: Progress) -> None:
    """The life of a driver holding the Lease: sessions of the engine, one per rollout
    (or per request between rollouts), each carried on after an outage."""
    from swiftdeploy.commands.cluster_trail import use_cluster_trail
    from swiftdeploy.runtime.kubernetes import lease_of

    loaded = fleet.loaded
    control = cluster_control(loaded)
    lease = lease_of(loaded)
    trail = use_cluster_trail(fleet)  # the driver alone appends the service's record
    secrets = driver_secrets(loaded)  # a secret missing: the driver does not start
    notifier = open_notifier(fleet, progress, secrets)
    state = fleet.store.load()
    previous = control.driver()
    now = time.time()
    carried = driving(state) and previous is not None and previous.rollout_id == state.rollout_id
    info = DriverInfo(
        pid=os.getpid(),
        rollout_id=state.rollout_id,
        started_at=now,
        first_started_at=previous.first_started_at if previous and carried else now,
        restarts=previous.restarts + 1 if previous and carried else 0,
        heartbeat_at=now,
        holder=lease.me if lease else None,
    )
    _announce(control, notifier, fleet, info, carried, holder=info.holder)
    progress(f"driver: holding the Lease as {info.holder}")
    if lease is not None:
        lease.say = progress  # the renewer's faults, on the driver's log
        stop.halt = lease.check
    try:
        while not stop.requested:
            try:
                state = fleet.store.load()
                refused = trail.refuse(state, fleet.recorder)
                if refused is not None:
                    _refuse_requests(control, refused, progress)
                    _pause(stop, REFUSED_POLL_S)
                    continue
                info = info.model_copy(update={"rollout_id": state.rollout_id})
                if driving(state) or _idle(fleet, control, info, stop, outage, notifier):
                    _session(fleet, control, info, stop, outage, notifier, secrets)
            except LockedError:
                raise  # lost the Lease: stop before the next write
            except SwiftDeployError as exc:
                # transient (the API server away) or not (a refusal while a restarted
                # API server's authorizer fills its caches, a Role being re-applied): the
                # driver holds, says so, and tries again; exiting would leave the canary
                # with nothing deciding
                outage.hold(exc, stop)
    finally:
        stop.halt = lambda: None  # the Lease is released with this session
        notifier.stop()  # a long-running driver just stops: its successor goes on
        with contextlib.suppress(SwiftDeployError):
            fleet.recorder.record(
                "driver", event="exited", pid=os.getpid(), outcome="stopped (SIGTERM)"
            )
            fleet.recorder.flush()
            trail.mirror()
            control.save_driver(
                info.model_copy(update={"exited": "stopped", "heartbeat_at": time.time()})
            )


def _refuse_requests(control: ConfigMapControl, refused: str, progress: Progress) -> None:
    """A state no recorded transition reached is not acted on (cluster_trail says why,
    and records it once): people's requests are answered with that, not left waiting."""
    for request in control.pending():
        if control.take(request):
            progress(f"driver: refused `{request.verb}` by {request.requested_by}: {refused}")
            control.answer(
                request,
                Answer(
                    id=request.id,
                    result="refused",
                    message=refused,
                    exit_code=int(ExitCode.OPERATIONAL),
                    hint="`swiftdeploy audit why` shows the last recorded transition",
                ),
            )


def _pause(stop: _Stop, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and not stop.requested:
        stop.halt()  # a hold outlives no Lease: it ends once the Lease is lost
        time.sleep(POLL_S)


def _idle(
    fleet: Fleet,
    control: ConfigMapControl,
    info: DriverInfo,
    stop: _Stop,
    outage: _Outage,
    notifier: Notifier,
) -> bool:
    """Between rollouts: a heartbeat now and then, until a request comes (True)."""
    beat = 0.0
    while not stop.requested:
        if time.monotonic() - beat > IDLE_HEARTBEAT_S:
            control.save_driver(info.model_copy(update={"heartbeat_at": time.time()}))
            outage.over(fleet, info.rollout_id)
            notifier.record_dead_letters(fleet.recorder)
            beat = time.monotonic()
        if control.pending():
            return True
        time.sleep(CLUSTER_POLL_S)
    return False


def _session(
    fleet: Fleet,
    control: ConfigMapControl,
    info: DriverInfo,
    stop: _Stop,
    outage: _Outage,
    notifier: Notifier,
    secrets: Secrets,
) -> None:
    """One engine's life: carry on the rollout in progress (after a restart or an
    outage), serve the requests (a `start` begins a rollout), drive it until it ends."""
    from swiftdeploy.commands.context import policy_engine, rollout_engine

    for request in control.interrupted():
        control.answer(request, _answer_interrupted(request))
    policy = policy_engine(fleet)
    engine = rollout_engine(fleet, policy, secrets=secrets)
    engine.keep_looking_when_held = True
    try:
        state = fleet.store.load()
        if driving(state):
            state = _carry_on(engine, fleet.reconcile(state))
        outage.over(fleet, state.rollout_id)  # carried on: the driver works again
        state = serve_requests(engine, control, state)
        if driving(state):
            info = info.model_copy(update={"rollout_id": state.rollout_id})
            _loop(engine, control, info, state, stop, CLUSTER_POLL_S, notifier)
    finally:
        policy.close()
        with contextlib.suppress(SwiftDeployError):
            engine.close()
