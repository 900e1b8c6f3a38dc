"""Releasing a version: canary, weight, promote, rollout, resume, abort, rollback.
Parsing and printing only; the work is in `commands/` and `rollout/`."""

from __future__ import annotations

import dataclasses
import json
import signal
import sys
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape
from rich.table import Table

from swiftdeploy.cli.app import app
from swiftdeploy.cli.common import (
    DEFAULT_PATH,
    ForceOption,
    JsonOption,
    ManifestOption,
    ReasonOption,
    checked,
    engine_for,
    err,
    fleet_of,
    force_reason,
    infrastructure_gate,
    load,
    locked_fleet,
    out,
    print_json,
    seconds,
    summary,
    warn,
)
from swiftdeploy.errors import ExitCode, StateError, SwiftDeployError

if TYPE_CHECKING:
    from swiftdeploy.fleet import Fleet
    from swiftdeploy.manifest import Manifest
    from swiftdeploy.rollout.engine import RolloutEngine, TickReport
    from swiftdeploy.rollout.plan import Plan
    from swiftdeploy.state import State

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
    checked(load(manifest), version)
    with locked_fleet(manifest) as fleet:
        infrastructure_gate(fleet, "canary")
        with engine_for(fleet) as engine:
            state = start_canary(engine, version, weight)
    out.print(f"canary started: {summary(state)}", markup=False)


@app.command()
def weight(
    percent: Annotated[int, typer.Argument(min=0, max=100, help="Canary weight, 0-100.")],
    manifest: ManifestOption = DEFAULT_PATH,
    force: ForceOption = False,
    reason: ReasonOption = None,
) -> None:
    """Set the canary's share of traffic by hand; upward, the canary policy is asked first."""
    from swiftdeploy.commands.weight import set_weight

    why = force_reason(force, reason)
    with locked_fleet(manifest) as fleet, engine_for(fleet) as engine:
        state = set_weight(engine, percent, why)
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
    `rollout`), the next steps keep their analysis."""
    from swiftdeploy.commands import gate, rollout
    from swiftdeploy.commands.promote import promote as promote_steps

    why = force_reason(force, reason)
    with locked_fleet(manifest) as fleet:
        if fleet.store.load().analysis:

            def gated(engine: RolloutEngine) -> State:
                state = fleet.reconcile(fleet.store.load())
                action = "promote --all" if to_the_end else "promote"
                gate.canary_gate(engine, state, action, why)
                return rollout.promote_analysed(engine, to_the_end)

            _run_rollout(fleet, gated, as_json=False)
            return
        with engine_for(fleet) as engine:
            state = promote_steps(engine, to_the_end, why)
    out.print(f"promoted: {summary(state)}", markup=False)


@app.command()
def rollout(
    version: VersionArgument,
    manifest: ManifestOption = DEFAULT_PATH,
    show_plan: Annotated[
        bool, typer.Option("--plan", help="Print what each step would take at today's traffic.")
    ] = False,
    as_json: Annotated[
        bool,
        typer.Option(
            "--json", help="One JSON object per look, then a summary (for CI); or the plan."
        ),
    ] = False,
) -> None:
    """Roll VERSION out step by step with analysis; promote or roll back by policy.

    Exit codes: 0 promoted (or paused for `promote`), 3 rolled back, 4 held."""
    from swiftdeploy.commands import rollout as rollout_cmd
    from swiftdeploy.manifest import require_version

    require_version(version, "VERSION")
    loaded = load(manifest)
    checked(loaded, version)
    if show_plan:
        found = rollout_cmd.plan_now(fleet_of(loaded))
        if found is None:
            raise StateError("nothing is deployed yet", hint="run `swiftdeploy deploy` first")
        _print_plan(version, found, loaded.manifest, as_json)
        return
    with locked_fleet(manifest) as fleet:
        infrastructure_gate(fleet, "canary")
        _run_rollout(fleet, lambda engine: rollout_cmd.start(engine, version), as_json=as_json)


@app.command()
def resume(manifest: ManifestOption = DEFAULT_PATH, as_json: JsonOption = False) -> None:
    """Carry on an interrupted or held rollout from its persisted phase and step."""
    from swiftdeploy.commands.rollout import resume as resume_rollout

    with locked_fleet(manifest) as fleet:
        _run_rollout(fleet, resume_rollout, as_json=as_json)


@app.command()
def abort(manifest: ManifestOption = DEFAULT_PATH) -> None:
    """Stop a running rollout (its current look finishes), then roll the canary back."""
    from swiftdeploy.commands.rollback import rollback as roll_back
    from swiftdeploy.commands.rollout import abort as stop_rollout
    from swiftdeploy.lock import lock_holder

    loaded = load(manifest)
    stopped = stop_rollout(lambda: lock_holder(loaded.state_dir))
    if stopped:
        err.print(f"stopped the rollout (pid {stopped})")
    with locked_fleet(manifest) as fleet:
        if not fleet.store.load().track("canary"):
            out.print("nothing to abort: no canary is running")
            return
        state = roll_back(fleet, reason="aborted by hand")
    out.print(f"aborted: {summary(state)}", markup=False)


@app.command()
def rollback(manifest: ManifestOption = DEFAULT_PATH) -> None:
    """Send the canary 0% at once and stop its replicas."""
    from swiftdeploy.commands.rollback import rollback as roll_back

    with locked_fleet(manifest) as fleet:
        state = roll_back(fleet)
    out.print(f"rolled back: {summary(state)}", markup=False)


# --- running a rollout in the foreground -----------------------------------------------


def _run_rollout(fleet: Fleet, body: Callable[[RolloutEngine], State], as_json: bool) -> None:
    """Run a rollout loop in the foreground, with the live view or one JSON line per look;
    SIGTERM lets the current look finish and leaves the state consistent for `resume`."""
    from swiftdeploy.cli.view import RolloutView, json_line
    from swiftdeploy.commands.rollout import outcome
    from swiftdeploy.state import Phase
    from swiftdeploy.wiring import policy_engine, rollout_engine

    stop = threading.Event()
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: stop.set())
    policy = policy_engine(fleet)
    try:
        title = f"{fleet.loaded.manifest.service.name} rollout"
        with RolloutView(err, title, enabled=not as_json) as view:
            on_tick: Callable[[TickReport], None] = _print_look if as_json else view.update
            engine = rollout_engine(fleet, policy, on_tick, stop.is_set)
            state = body(engine)
    finally:
        policy.close()
        signal.signal(signal.SIGTERM, previous)
    interrupted = stop.is_set() and state.phase not in (Phase.PROMOTED, Phase.ROLLED_BACK)
    code, message = ExitCode.OK, ""
    try:
        message = outcome(state)
    except SwiftDeployError as exc:
        code, message = exc.exit_code, exc.one_line()
        if not as_json:
            raise
    if interrupted:
        code = ExitCode.INTERRUPTED
    if as_json:
        print(json.dumps(json_line(state, message, int(code))), flush=True)
    else:
        out.print(message, markup=False)
    if code != ExitCode.OK:
        raise typer.Exit(code)


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
        needed = str(step.needed_requests) if step.needed_requests else "- (earlier step's)"
        about = seconds(step.seconds) if step.seconds is not None else "cannot plan"
        within = "yes" if step.within_limit else "[yellow]no: holds[/]"
        row = (str(step.index + 1), f"{step.weight}%", f"{step.canary_rps:.1f}", needed, about)
        canary = escape(per_replica.shown(per_replica.canary_share))
        canary = f"[yellow]{canary}[/]" if per_replica.overloaded else canary
        stable = escape(per_replica.shown(per_replica.stable_share))
        table.add_row(*row, within, canary, stable)
    total = found.total_s
    caption = [f"whole rollout: about {seconds(total)}"] if total else []
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
