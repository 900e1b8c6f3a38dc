"""Releasing a version: canary, weight, promote, rollout, resume, abort, rollback.
Parsing and printing only; the work is in `commands/` and `rollout/`."""

from __future__ import annotations

import dataclasses
import errno
import json
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal, TextIO

import typer
from rich.markup import escape
from rich.table import Table

from swiftdeploy.cli.app import app
from swiftdeploy.cli.common import (
    DEFAULT_PATH,
    ForceOption,
    ManifestOption,
    ReasonOption,
    command,
    err,
    force_reason,
    out,
    print_json,
    read_manifest,
    summary,
    warn,
)
from swiftdeploy.durations import format_duration
from swiftdeploy.errors import (
    BadInputError,
    ExitCode,
    OperationalError,
    StateError,
    SwiftDeployError,
    TransientError,
)

if TYPE_CHECKING:
    from swiftdeploy.commands.context import CommandContext
    from swiftdeploy.fleet import Fleet
    from swiftdeploy.manifest import LoadedManifest, Manifest
    from swiftdeploy.rollout.engine import RolloutEngine, TickReport
    from swiftdeploy.rollout.plan import Plan
    from swiftdeploy.state import State, StateStore
    from swiftdeploy.state.control import Answer, Verb

VersionArgument = Annotated[str, typer.Argument(help="The version (letters, digits, . _ -).")]


@app.command()
def canary(
    version: VersionArgument,
    manifest: ManifestOption = DEFAULT_PATH,
    weight: Annotated[
        int | None,
        typer.Option(min=0, max=100, help="Canary weight in percent (default: the first step)."),
    ] = None,
) -> None:
    """Start canary replicas of VERSION and send them a share of traffic."""
    from swiftdeploy.commands.canary import start_canary
    from swiftdeploy.manifest import require_version

    require_version(version, "VERSION")
    loaded = read_manifest(manifest)
    with command(loaded, preflight=True, version=version, lock=True, gate="canary") as context:
        state = start_canary(context.engine(), version, weight)
    out.print(f"canary started: {summary(state)}", markup=False)


@app.command()
def weight(
    percent: Annotated[int, typer.Argument(min=0, max=100, help="Canary weight, 0-100.")],
    manifest: ManifestOption = DEFAULT_PATH,
    force: ForceOption = False,
    reason: ReasonOption = None,
) -> None:
    """Set the canary's share of traffic by hand; upward, the canary policy is asked first.
    In a running rollout, its driver moves it (the step goes on at the new weight)."""
    from swiftdeploy.commands.weight import set_weight

    why = force_reason(force, reason)
    if _steer(manifest, "weight", weight=percent, reason=why, force=why is not None):
        return
    with command(read_manifest(manifest), lock=True) as context:
        state = set_weight(context.engine(), percent, why)
    out.print(f"weight set: {summary(state)}", markup=False)


@app.command()
def promote(
    manifest: ManifestOption = DEFAULT_PATH,
    to_the_end: Annotated[bool, typer.Option("--all", help="Run every remaining step.")] = False,
    force: ForceOption = False,
    reason: ReasonOption = None,
) -> None:
    """Advance to the next step, or (--all) through every step to stable.

    The canary policy is asked first, on the current step's numbers: evidence of harm,
    metrics that cannot be read or a policy engine that cannot decide refuse it (exit
    3, nothing changed) unless --force --reason TEXT. In a rollout (started with
    `rollout`), its driver does it, and the next steps keep their analysis."""
    from swiftdeploy.commands.promote import promote as promote_steps

    why = force_reason(force, reason)
    fields = {"to_the_end": to_the_end, "reason": why, "force": why is not None}
    if _steer(manifest, "promote", **fields):
        return
    with command(read_manifest(manifest), lock=True) as context:
        if context.fleet.store.load().auto_advance:  # driven in the foreground (Kubernetes)
            _promote_in_foreground(context, to_the_end, why)
            return
        state = promote_steps(context.engine(), to_the_end, why)
    out.print(f"promoted: {summary(state)}", markup=False)


def _promote_in_foreground(context: CommandContext, to_the_end: bool, why: str | None) -> None:
    from swiftdeploy.commands import gate
    from swiftdeploy.commands import rollout as rollout_cmd

    fleet = context.fleet

    def gated(engine: RolloutEngine) -> State:
        state = fleet.reconcile(fleet.store.load())
        action = "promote --all" if to_the_end else "promote"
        gate.canary_gate(engine, state, action, why)
        return rollout_cmd.promote_analysed(engine, to_the_end)

    _run_rollout(context, gated, as_json=False)


DetachOption = Annotated[
    bool, typer.Option("--detach", help="Return once the driver has the rollout.")
]
WaitOption = Annotated[
    bool,
    typer.Option(
        "--wait",
        help="Follow until the rollout ends or holds, with its exit code (the default off"
        " a terminal; for CI).",
    ),
]
EventsOption = Annotated[
    bool, typer.Option("--events", help="Print the rollout's events (CloudEvents JSON lines).")
]
# A file of its own, not `--events [FILE]`: Typer's options have no optional value, and
# with one `rollout --events v2` would take v2 for the file.
EventsFileOption = Annotated[
    Path | None,
    typer.Option(
        "--events-file",
        metavar="FILE",
        help="Write the rollout's events (CloudEvents JSON lines) to FILE as they are"
        " recorded, for CI: replaced, created 0600; a symbolic link is refused.",
    ),
]
SummaryJsonOption = Annotated[bool, typer.Option("--json", help="A JSON summary at the end.")]
QuietOption = Annotated[bool, typer.Option("--quiet", "-q", help="Print only the outcome.")]
VerboseOption = Annotated[
    bool, typer.Option("--verbose", "-v", help="Every look, and the statistics behind it.")
]


@app.command()
def rollout(
    version: VersionArgument,
    manifest: ManifestOption = DEFAULT_PATH,
    show_plan: Annotated[
        bool, typer.Option("--plan", help="Print what each step would take at today's traffic.")
    ] = False,
    as_json: Annotated[
        bool, typer.Option("--json", help="A JSON summary at the end (for CI); or the plan.")
    ] = False,
    detach: DetachOption = False,
    wait: WaitOption = False,
    events: EventsOption = False,
    events_file: EventsFileOption = None,
    quiet: QuietOption = False,
    verbose: VerboseOption = False,
) -> None:
    """Roll VERSION out step by step with analysis; promote or roll back by policy.

    A driver under the project's supervisor runs the rollout; this command follows it.
    Ctrl-C detaches (the rollout goes on: `attach`, `status`, `abort`). Exit codes when
    following to the end (--wait, or off a terminal): 0 promoted (or paused for
    `promote`), 3 rolled back, 4 held."""
    from swiftdeploy.commands import rollout as rollout_cmd
    from swiftdeploy.manifest import require_version

    require_version(version, "VERSION")
    loaded = read_manifest(manifest)
    cluster = _cluster(loaded)  # in the cluster, the driver checks with its own rights
    if show_plan:
        with command(loaded, preflight=not cluster, version=version) as context:
            found = rollout_cmd.plan_now(context.fleet)
        if found is None:
            raise StateError("nothing is deployed yet", hint="run `swiftdeploy deploy` first")
        _print_plan(version, found, loaded.manifest, as_json)
        return
    if detach and events_file is not None:
        raise BadInputError("--events-file follows the rollout: it does not go with --detach")
    # opened before anything starts: a path it cannot write is exit 2, nothing started
    with _events_file(events_file) as sink:
        mode = _Follow(detach, wait, events, as_json, quiet, verbose, sink)
        if cluster:
            _rollout_in_cluster(loaded, version, mode)
            return
        from swiftdeploy.commands.driver import start_driver, wait_for_driver
        from swiftdeploy.rollout.engine import new_rollout_id

        with command(loaded, preflight=True, version=version, lock=True, gate="canary") as context:
            fleet = context.fleet
            fleet.require_canary_can_start(fleet.reconcile(fleet.store.load()), version)
            _early_warnings(fleet)
            rollout_id = new_rollout_id()
            start_driver(fleet, rollout_id, version)
        state = wait_for_driver(loaded, rollout_id)
        _follow(loaded, state, mode)


def _rollout_in_cluster(loaded: LoadedManifest, version: str, mode: _Follow) -> None:
    """Ask the driver in the cluster to start the rollout (it runs the gates and
    records the request as this person's), then follow it like any rollout."""
    from swiftdeploy.commands.driver import start_in_cluster
    from swiftdeploy.rollout.engine import new_rollout_id
    from swiftdeploy.state import State

    _require_cluster_driver(loaded)  # before the advice: no driver, nothing to advise
    with command(loaded) as context:
        _early_warnings(context.fleet)
    found = start_in_cluster(loaded, version, new_rollout_id(), away=_Away())
    if not isinstance(found, State):
        raise SteerRefused(found.message, found.hint, found.exit_code)
    _follow(loaded, found, mode)


@app.command()
def attach(
    manifest: ManifestOption = DEFAULT_PATH,
    as_json: SummaryJsonOption = False,
    wait: WaitOption = False,
    events: EventsOption = False,
    events_file: EventsFileOption = None,
    quiet: QuietOption = False,
    verbose: VerboseOption = False,
) -> None:
    """Follow the running rollout from this terminal; Ctrl-C detaches (it goes on)."""
    from swiftdeploy.commands.driver import driving

    loaded = read_manifest(manifest)
    state = _store(loaded).load()
    if not driving(state):
        raise StateError(
            f"no rollout to attach to (phase {state.phase.value})",
            hint="`swiftdeploy rollout VERSION` starts one; `swiftdeploy status` shows what runs",
        )
    with _events_file(events_file) as sink:
        _follow(loaded, state, _Follow(False, wait, events, as_json, quiet, verbose, sink))


@app.command()
def resume(
    manifest: ManifestOption = DEFAULT_PATH,
    as_json: SummaryJsonOption = False,
    detach: DetachOption = False,
    wait: WaitOption = False,
    quiet: QuietOption = False,
    verbose: VerboseOption = False,
) -> None:
    """Carry on a paused, held or interrupted rollout from its persisted phase and step
    (a driver is started if none runs), then follow it."""
    loaded = read_manifest(manifest)
    cluster = _cluster(loaded)
    state = _store(loaded).load()
    _require_rollout(state, "resume")
    if state.phase.value == "paused" and state.pause_kind in ("operator", "held"):
        _steer(manifest, "resume")
    elif cluster:
        _require_cluster_driver(loaded)  # it carries the rollout on by itself
    else:
        _ensure_driver(loaded)
    _follow(loaded, _store(loaded).load(), _Follow(detach, wait, False, as_json, quiet, verbose))


@app.command()
def pause(manifest: ManifestOption = DEFAULT_PATH, reason: ReasonOption = None) -> None:
    """Hold the running rollout at its weight, with no max_duration clock, until
    `resume` (or `promote`, `abort`)."""
    if _steer(manifest, "pause", reason=reason):
        return
    _require_rollout(_store(read_manifest(manifest)).load(), "pause")
    raise StateError(
        "`pause` needs a rollout driver; on this runtime the CLI drives it",
        hint="stop it with Ctrl-C (the state is kept) and `swiftdeploy resume` later",
    )


@app.command()
def abort(manifest: ManifestOption = DEFAULT_PATH, reason: ReasonOption = None) -> None:
    """Stop a running rollout and roll the canary back (within its driver's next poll)."""
    if _steer(manifest, "abort", reason=reason):
        return
    from swiftdeploy.commands.rollback import rollback as roll_back

    with command(read_manifest(manifest), lock=True) as context:
        fleet = context.fleet
        if not fleet.store.load().track("canary"):
            out.print("nothing to abort: no canary is running")
            return
        by = _person()
        state = roll_back(fleet, reason=f"aborted by {by}" + (f": {reason}" if reason else ""))
    out.print(f"aborted: {summary(state)}", markup=False)


@app.command()
def rollback(manifest: ManifestOption = DEFAULT_PATH) -> None:
    """Send the canary 0% at once and stop its replicas."""
    if _steer(manifest, "abort", reason="rollback"):
        return
    from swiftdeploy.commands.rollback import rollback as roll_back

    with command(read_manifest(manifest), lock=True) as context:
        state = roll_back(context.fleet)
    out.print(f"rolled back: {summary(state)}", markup=False)


@app.command(hidden=True)
def drive(
    manifest: ManifestOption = DEFAULT_PATH,
    rollout_id: Annotated[str, typer.Option("--rollout", help="The rollout to drive.")] = "",
    start: Annotated[str | None, typer.Option(help="Start a rollout of this version.")] = None,
    controller: Annotated[
        bool,
        typer.Option(
            "--controller",
            help="The driver in the cluster: one per service, for its whole life"
            " (what `swiftdeploy kube install` runs).",
        ),
    ] = False,
) -> None:
    """The rollout's driver (run by the project's supervisor or, with --controller, by
    the service's Deployment in the cluster; not by people)."""
    from swiftdeploy.cli.common import progress
    from swiftdeploy.commands.driver import drive as run_driver
    from swiftdeploy.commands.driver import drive_controller

    if controller:
        code = drive_controller(read_manifest(manifest), progress)
    else:
        code = run_driver(read_manifest(manifest), rollout_id, start, progress)
    if code:
        raise typer.Exit(code)


# --- the driver's clients ----------------------------------------------------------------


def _cluster(loaded: LoadedManifest) -> bool:
    from swiftdeploy.commands.driver import in_cluster

    return in_cluster(loaded)


def _require_cluster_driver(loaded: LoadedManifest) -> None:
    from swiftdeploy.commands.driver import cluster_control, driver_installed, no_driver

    if not driver_installed(cluster_control(loaded)):
        raise no_driver(loaded)


def _store(loaded: LoadedManifest) -> StateStore:
    from swiftdeploy.commands.context import state_store

    return state_store(loaded)


def _person() -> str:
    from swiftdeploy.state.control import requester

    return requester()


def _require_rollout(state: State, verb: str) -> None:
    from swiftdeploy.commands.driver import driving

    if not driving(state):
        raise StateError(
            f"no rollout to {verb} (phase {state.phase.value})"
            + ("; the canary was started by hand" if state.canary_version else ""),
            hint="`swiftdeploy status` shows what runs",
        )


def _ensure_driver(loaded: LoadedManifest) -> None:
    """A driver for the persisted rollout, started if none runs, and holding it."""
    from swiftdeploy.commands.driver import (
        driver_restarting,
        driver_status,
        start_driver,
        wait_for_lock,
    )

    state = _store(loaded).load()
    if driver_status(loaded, state).alive:
        return
    if driver_restarting(loaded):  # its supervisor restarts it: it holds in a moment
        wait_for_lock(loaded)
        return
    with command(loaded, lock=True) as context:
        state = context.fleet.store.load()
        _require_rollout(state, "drive")
        assert state.rollout_id is not None
        start_driver(context.fleet, state.rollout_id, None)
        err.print(f"no driver was running: started one for rollout {state.rollout_id}")
    wait_for_lock(loaded)


def _steer(manifest: Path, verb: Verb, **fields: object) -> bool:
    """Have the rollout's driver do it (started first when none runs); False when the
    project has no driven rollout, so the caller acts by hand."""
    from swiftdeploy.commands.driver import ask, driver_restarting, driving, wait_for_lock

    loaded = read_manifest(manifest)
    if _cluster(loaded):
        return _steer_cluster(loaded, verb, **fields)
    # a running driver is asked at once (an `abort` is on the clock); only without one
    # is the state read, to tell whether the rollout needs one
    answer = ask(loaded, verb, **fields)
    if answer is None and not driving(_store(loaded).load()):
        return False
    if answer is None and driver_restarting(loaded):
        # the driver died and its supervisor restarts it: acting by hand now would race
        # it for the project's lock; it takes the request once it holds the rollout
        wait_for_lock(loaded)
        answer = ask(loaded, verb, **fields)
    if answer is None and verb != "abort":
        _ensure_driver(loaded)
        answer = ask(loaded, verb, **fields)
    if answer is None:  # abort with no driver: roll back by hand
        return False
    _answered(answer)
    return True


def _steer_cluster(loaded: LoadedManifest, verb: Verb, **fields: object) -> bool:
    """The driver in the cluster does it; without one, a rollout in progress waits for
    it (one line saying how to install it), anything else is done by hand (the CLI takes
    the Lease, as before a driver was installed; `abort` too, so a rollout whose driver
    is gone can still be stopped)."""
    from swiftdeploy.commands.driver import (
        ask_cluster,
        cluster_control,
        driver_installed,
        driving,
        no_driver,
    )

    if not driver_installed(cluster_control(loaded)):
        if verb != "abort" and driving(_store(loaded).load()):
            raise no_driver(loaded)
        return False
    _answered(ask_cluster(loaded, verb, **fields))
    return True


def _answered(answer: Answer) -> None:
    if answer.result != "done":
        raise SteerRefused(answer.message, answer.hint, answer.exit_code)
    out.print(answer.message, markup=False)


class SteerRefused(SwiftDeployError):
    """The driver refused or failed a person's request; its exit code is the driver's."""

    def __init__(self, message: str, hint: str | None, code: int) -> None:
        super().__init__(message, hint=hint)
        self.exit_code = ExitCode(code)


def _early_warnings(fleet: Fleet) -> None:
    """What the traffic says about this rollout, before it starts (no or little traffic)."""
    from swiftdeploy.commands.rollout import plan_now
    from swiftdeploy.rollout.plan import early_warnings

    try:
        found = plan_now(fleet)
    except SwiftDeployError as exc:
        # advice, not a gate: the rollout's looks deal with a service they cannot read
        warn([f"no plan for this rollout: {exc.one_line()}"])
        return
    if found is not None:
        warn(early_warnings(found))


@dataclasses.dataclass(frozen=True)
class _Follow:
    detach: bool
    wait: bool
    events: bool
    as_json: bool
    quiet: bool
    verbose: bool
    events_file: TextIO | None = None  # --events-file, open


@contextmanager
def _events_file(path: Path | None) -> Iterator[TextIO | None]:
    """--events-file's FILE, replaced, 0600 (events carry the trail's reasons), and
    never opened through a symbolic link (one planted in /tmp would choose where CI
    writes); None without the option."""
    if path is None:
        yield None
        return
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        fd = os.open(path, flags, 0o600)
    except OSError as exc:
        why = "it is a symbolic link" if exc.errno == errno.ELOOP else exc.strerror or str(exc)
        raise BadInputError(
            f"--events-file {path}: cannot write it: {why}",
            hint="name a regular file in a directory that exists and you can write",
        ) from None
    with os.fdopen(fd, "w", encoding="utf-8") as sink:
        yield sink


# How long a follower waits for a dead driver to be restarted before it says so.
DRIVER_GONE_S = 15.0
FOLLOW_POLL_S = 0.25
# After the API server was away, its refusals are waited through for this long.
AFTER_OUTAGE_S = 30.0


def _follow(loaded: LoadedManifest, state: State, how: _Follow) -> None:
    """Follow the driver's rollout from the state it persists, until it ends (or holds,
    with --wait), or Ctrl-C detaches."""
    if how.detach:
        out.print(
            f"rollout {state.rollout_id} of {state.canary_version} goes on under its driver:"
            " `swiftdeploy attach` follows it; `status`, `pause`, `promote`, `abort` steer it",
            markup=False,
        )
        return
    from swiftdeploy.cli.view import RolloutFollower
    from swiftdeploy.commands.driver import DriverWatch, follow_ends

    to_the_end = how.wait or how.as_json or how.events or not err.is_terminal
    rollout_id = state.rollout_id
    detached = threading.Event()
    previous = signal.signal(signal.SIGINT, lambda signum, frame: detached.set())
    store = _store(loaded)
    sinks = ([sys.stdout] if how.events else []) + ([how.events_file] if how.events_file else [])
    events = _EventPrinter(loaded, rollout_id, sinks) if sinks else None
    watch = DriverWatch(loaded, DRIVER_GONE_S)
    try:
        with RolloutFollower(err, loaded.manifest, mode=_view_mode(how)) as view:
            seen = 0.0
            away = _Away()
            while not detached.is_set():
                try:
                    state = store.load()
                except OperationalError as exc:
                    if not away.waits(exc):
                        raise
                    view.tick()
                    time.sleep(FOLLOW_POLL_S)
                    continue
                away.back()
                if state.updated_at != seen:
                    seen = state.updated_at
                    view.update(state)
                if follow_ends(state, rollout_id, to_the_end):
                    break
                watch.check(state)
                view.tick()
                time.sleep(FOLLOW_POLL_S)
    finally:
        signal.signal(signal.SIGINT, previous)
        if events is not None:
            events.close()
    if detached.is_set():
        err.print(
            "detached: the rollout goes on; `swiftdeploy attach`, `status`, `abort`",
            markup=False,
        )
        return
    _finish(state, how.as_json, events=how.events)


class _Away:
    """A follower while the state cannot be read: it waits through an API server that
    is away (the driver holds meanwhile), and through its refusals for a moment after
    it answers again (a restarted API server's authorizer fills its caches first)."""

    def __init__(self) -> None:
        self.since: float | None = None
        self.last_away = -AFTER_OUTAGE_S

    def waits(self, exc: OperationalError) -> bool:
        now = time.monotonic()
        if isinstance(exc, TransientError):
            self.last_away = now
        elif now - self.last_away > AFTER_OUTAGE_S:
            return False
        if self.since is None:
            self.since = now
            err.print(f"waiting: {exc.one_line()}", markup=False)
        return True

    def back(self) -> None:
        if self.since is not None:
            waited = format_duration(time.monotonic() - self.since)
            err.print(f"reading again after {waited}", markup=False)
            self.since = None


def _view_mode(how: _Follow) -> Literal["live", "lines", "quiet", "verbose"]:
    if how.quiet:
        return "quiet"
    if how.verbose:
        return "verbose"
    return "live" if err.is_terminal else "lines"


def _finish(state: State, as_json: bool, events: bool = False) -> None:
    """The outcome line (or JSON summary) and the exit code of a followed rollout. With
    `events`, stdout holds only the events: the outcome line goes to stderr."""
    from swiftdeploy.cli.view import json_line
    from swiftdeploy.commands.rollout import outcome

    code, message = ExitCode.OK, ""
    try:
        message = outcome(state)
    except SwiftDeployError as exc:
        code, message = exc.exit_code, exc.one_line()
        if not as_json:
            raise
    if as_json:
        print(json.dumps({"schema_version": 1, **json_line(state, message, int(code))}), flush=True)
    else:
        (err if events else out).print(message, markup=False)
    if code != ExitCode.OK:
        raise typer.Exit(code)


class _EventPrinter:
    """The rollout's events (docs/events.md) as they reach the trail, one JSON line each
    to every sink (stdout for --events, the --events-file), from a thread that follows
    the trail until `close()`, which writes the last ones first."""

    def __init__(self, loaded: LoadedManifest, rollout_id: str | None, sinks: list[TextIO]) -> None:
        from swiftdeploy.commands.events import project_events

        self.sinks = sinks
        self.done = threading.Event()
        self.events = project_events(loaded, rollout=rollout_id, follow=True, stop=self.done.is_set)
        self.thread = threading.Thread(target=self._print, daemon=True)
        self.thread.start()

    def _print(self) -> None:
        for event in self.events:
            line = json.dumps(event) + "\n"
            for sink in self.sinks:
                sink.write(line)
                sink.flush()  # a CI step tailing the file sees each as it comes

    def close(self) -> None:
        self.done.set()
        self.thread.join(timeout=10)


# --- running a rollout in the foreground -----------------------------------------------


def _run_rollout(
    context: CommandContext, body: Callable[[RolloutEngine], State], as_json: bool
) -> None:
    """Run a rollout loop in this process (where no driver runs it: Kubernetes, for now),
    with the live view or one JSON line per look; SIGTERM lets the current look finish
    and leaves the state consistent for `resume`."""
    from swiftdeploy.cli.view import RolloutFollower
    from swiftdeploy.state import Phase

    fleet = context.fleet
    context.policy()  # before the view: an OPA started here says so on a line of its own
    stop = threading.Event()
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: stop.set())
    mode: Literal["live", "lines", "quiet"] = "live" if err.is_terminal else "lines"
    try:
        with RolloutFollower(err, fleet.loaded.manifest, mode="quiet" if as_json else mode) as view:

            def on_tick(report: TickReport) -> None:
                if as_json:
                    _print_look(report)
                view.update(report.state)

            state = body(context.engine(on_tick, stop.is_set))
    finally:
        signal.signal(signal.SIGTERM, previous)
        fleet.recorder.flush()  # the looks the recorder holds back (audit/recorder.py)
    if stop.is_set() and state.phase not in (Phase.PROMOTED, Phase.ROLLED_BACK):
        out.print("stopped; the state is kept: `swiftdeploy resume` carries on", markup=False)
        raise typer.Exit(ExitCode.INTERRUPTED)
    _finish(state, as_json)


def _print_look(report: TickReport) -> None:
    from swiftdeploy.cli.view import look_json

    sys.stdout.write(json.dumps(look_json(report)) + "\n")
    sys.stdout.flush()


def _print_plan(version: str, found: Plan, manifest: Manifest, as_json: bool) -> None:
    from swiftdeploy.rollout.capacity import manifest_loads, warnings

    # each replica's load at each step, in req/s too when the plan read a rate
    loads = manifest_loads(manifest, found.service_rps if found.service_rps > 0 else None)
    if as_json:
        capacity = {"capacity": [step.as_json() for step in loads], "warnings": warnings(loads)}
        print_json(dataclasses.asdict(found) | {"total_s": found.total_s} | capacity)
        return
    errors = f"{found.stable_error_rate:.2%}" if found.stable_error_rate is not None else "n/a"
    table = Table(
        "step", "weight", "canary req/s", "canary requests needed", "about", "within max_duration",
        "per canary replica", "per stable replica",
        title=escape(
            f"rollout of {version} at {found.service_rps:.1f} req/s (stable errors {errors})"
        ),
    )  # fmt: skip
    for step, per_replica in zip(found.steps, loads, strict=True):
        needed = step.needed_text
        about = format_duration(step.seconds) if step.seconds is not None else "cannot plan"
        within = "yes" if step.within_limit else "[yellow]no: holds[/]"
        row = (str(step.index + 1), f"{step.weight}%", f"{step.canary_rps:.1f}", needed, about)
        canary = escape(per_replica.shown(per_replica.canary_share))
        canary = f"[yellow]{canary}[/]" if per_replica.overloaded else canary
        stable = escape(per_replica.shown(per_replica.stable_share))
        table.add_row(*row, within, canary, stable)
    total = found.total_s
    caption = [f"whole rollout: about {format_duration(total)}"] if total else []
    if loads:
        first = loads[0]
        caption.append(
            f"{first.canary_replicas} canary and {first.stable_replicas} stable replicas; before"
            f" the rollout each stable replica carries {first.shown(first.before_share)}"
        )
    table.caption = escape("\n".join(caption)) or None
    out.print(table)
    for note in found.notes:
        err.print(f"note: {note}", markup=False)
    warn(warnings(loads))
