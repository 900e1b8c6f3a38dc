"""Command-line interface: parsing and printing only; the work is in `commands/`.

One handler maps every SwiftDeployError to one line on stderr and its exit code,
Ctrl-C to 130, and anything unexpected to a crash log with a short pointer to it.
"""

from __future__ import annotations

import dataclasses
import json
import signal
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import click
import typer
from rich.console import Console
from rich.live import Live
from rich.table import Table

from swiftdeploy.audit.cli import audit_app
from swiftdeploy.commands import canary as canary_cmd
from swiftdeploy.commands import chaos as chaos_cmd
from swiftdeploy.commands import deploy as deploy_cmd
from swiftdeploy.commands import doctor as doctor_cmd
from swiftdeploy.commands import gate as gate_cmd
from swiftdeploy.commands import init as init_cmd
from swiftdeploy.commands import metrics as metrics_cmd
from swiftdeploy.commands import policy as policy_cmd
from swiftdeploy.commands import promote as promote_cmd
from swiftdeploy.commands import rollback as rollback_cmd
from swiftdeploy.commands import rollout as rollout_cmd
from swiftdeploy.commands import status as status_cmd
from swiftdeploy.commands import teardown as teardown_cmd
from swiftdeploy.commands import validate as validate_cmd
from swiftdeploy.commands import weight as weight_cmd
from swiftdeploy.commands.audit import open_audit_log
from swiftdeploy.commands.context import load, open_fleet
from swiftdeploy.durations import parse_duration
from swiftdeploy.errors import BadInputError, ExitCode, StateError, SwiftDeployError
from swiftdeploy.fleet import Fleet
from swiftdeploy.lock import lock_holder, project_lock
from swiftdeploy.manifest import DEFAULT_MANIFEST, LoadedManifest, json_schema
from swiftdeploy.rollout.engine import RolloutEngine
from swiftdeploy.rollout.plan import Plan
from swiftdeploy.rollout.state import Phase, State, StateStore, Track
from swiftdeploy.runtime import create_runtime
from swiftdeploy.view import RolloutView
from swiftdeploy.wiring import policy_engine, rollout_engine

app = typer.Typer(
    name="swiftdeploy",
    help="Policy-gated progressive delivery: canary releases through nginx, gated by Rego.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.add_typer(audit_app, name="audit")
# Piped output keeps whole tables rather than rich's 80-column default.
out = Console(highlight=False, width=None if sys.stdout.isatty() else 160)
err = Console(stderr=True, highlight=False)


def _duration(text: str) -> float:
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None


WindowOption = Annotated[
    float | None,
    typer.Option(
        parser=_duration,
        metavar="DURATION",
        help="The last stretch of traffic to show, e.g. 30s or 5m (default: metrics.window).",
    ),
]
ForceOption = Annotated[
    bool, typer.Option("--force", help="Go on although the canary policy refuses (needs --reason).")
]
ReasonOption = Annotated[
    str | None, typer.Option("--reason", help="Why the refusal is overridden (recorded).")
]
ManifestOption = Annotated[
    Path, typer.Option("-f", "--manifest", help="Path to the manifest.", show_default=True)
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print data as JSON.")]
DEFAULT_PATH = Path(DEFAULT_MANIFEST)


def _progress(message: str) -> None:
    err.print(f"[cyan]•[/] {message}", markup=True, highlight=False)


@contextmanager
def _locked_fleet(manifest: Path) -> Iterator[Fleet]:
    """The project's fleet under its lock, with the command recorded before it acts."""
    loaded = load(manifest)
    with project_lock(loaded.state_dir):
        fleet = open_fleet(loaded, _progress)
        fleet.recorder.record("command", rollout_id=fleet.store.load().rollout_id)
        yield fleet


def _print_json(data: Any) -> None:
    out.print_json(json.dumps(data, default=str))


def _summary(state: State) -> str:
    text = f"phase {state.phase.value}; stable {state.stable_version or '-'}"
    if state.canary_version:
        text += f"; canary {state.canary_version} at {state.canary_weight}%"
    return text


@app.command()
def init(
    directory: Annotated[Path, typer.Argument(help="Where to write the project.")] = Path("."),
    listen: Annotated[str, typer.Option(help="Public HOST:PORT for nginx.")] = "127.0.0.1:8080",
    force: Annotated[bool, typer.Option(help="Overwrite an existing manifest.")] = False,
) -> None:
    """Write a commented manifest that runs the bundled demo service, plus policies/."""
    for path in init_cmd.init_project(directory, listen, force):
        out.print(f"wrote {path}")


@app.command()
def validate(manifest: ManifestOption = DEFAULT_PATH, as_json: JsonOption = False) -> None:
    """Check the manifest: schema, command, ports, and the rendered nginx config (nginx -t)."""
    loaded = load(manifest)
    checks = validate_cmd.preflight(loaded)
    if as_json:
        _print_json({"manifest": str(loaded.path), "valid": True, "checks": checks})
        return
    for check in checks:
        out.print(f"[green]ok[/] {check}")
    out.print(f"{loaded.path} is valid")


@app.command()
def schema() -> None:
    """Print the manifest's JSON Schema (for editor completion)."""
    _print_json(json_schema())


@app.command()
def doctor(manifest: ManifestOption = DEFAULT_PATH, as_json: JsonOption = False) -> None:
    """Versions and health of every part: nginx, lua, supervisord, Prometheus, hey, OPA."""
    checks = doctor_cmd.run_checks()
    processes: list[dict[str, Any]] = []
    if manifest.is_file():
        loaded = load(manifest)
        runtime = create_runtime("local", loaded.state_dir)
        processes = [p.__dict__ for p in runtime.processes()]
    if as_json:
        _print_json({"checks": [c.__dict__ for c in checks], "processes": processes})
    else:
        table = Table("part", "ok", "detail")
        for check in checks:
            table.add_row(check.part, "[green]yes[/]" if check.ok else "[red]no[/]", check.detail)
        out.print(table)
        for process in processes:
            out.print(f"process {process['name']}: {process['state']} (pid {process['pid']})")
    if not all(c.ok for c in checks):
        raise typer.Exit(ExitCode.OPERATIONAL)


@app.command()
def deploy(
    manifest: ManifestOption = DEFAULT_PATH,
    version: Annotated[
        str | None, typer.Option(help="Version to deploy (default: service.version).")
    ] = None,
) -> None:
    """First deploy, or a plain rolling replace of the stable version."""
    loaded = load(manifest)
    validate_cmd.preflight(loaded)
    target = version or loaded.manifest.service.version
    with _locked_fleet(manifest) as fleet:
        _gate(fleet, "deploy")
        state = deploy_cmd.deploy(fleet, target)
    out.print(
        f"deployed {target}: {_summary(state)}; listening on {loaded.manifest.traffic.listen}"
    )


@app.command()
def canary(
    version: Annotated[str, typer.Argument(help="The new version to start as a canary.")],
    manifest: ManifestOption = DEFAULT_PATH,
    weight: Annotated[
        int | None, typer.Option(help="Canary weight in percent (default: the first step).")
    ] = None,
) -> None:
    """Start canary replicas of VERSION and send them a share of traffic."""
    loaded = load(manifest)
    validate_cmd.preflight(loaded)
    with _locked_fleet(manifest) as fleet:
        _gate(fleet, "canary")
        with _engine(fleet) as engine:
            state = canary_cmd.start_canary(engine, version, weight)
    out.print(f"canary started: {_summary(state)}")


@app.command()
def weight(
    percent: Annotated[int, typer.Argument(help="Canary weight, 0-100.")],
    manifest: ManifestOption = DEFAULT_PATH,
    force: ForceOption = False,
    reason: ReasonOption = None,
) -> None:
    """Set the canary's share of traffic by hand; upward, the canary policy is asked first."""
    force_reason = _force_reason(force, reason)
    with _locked_fleet(manifest) as fleet, _engine(fleet) as engine:
        state = weight_cmd.set_weight(engine, percent, force_reason)
    out.print(f"weight set: {_summary(state)}")


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
    force_reason = _force_reason(force, reason)
    with _locked_fleet(manifest) as fleet:
        if fleet.store.load().analysis:

            def gated(engine: RolloutEngine) -> State:
                state = fleet.reconcile(fleet.store.load())
                action = "promote --all" if to_the_end else "promote"
                gate_cmd.canary_gate(engine, state, action, force_reason)
                return rollout_cmd.promote_analysed(engine, to_the_end)

            _run_rollout(fleet, gated)
            return
        with _engine(fleet) as engine:
            state = promote_cmd.promote(engine, to_the_end, force_reason)
    out.print(f"promoted: {_summary(state)}")


def _force_reason(force: bool, reason: str | None) -> str | None:
    if force and not (reason and reason.strip()):
        raise BadInputError("--force needs --reason TEXT", hint="say why; it is recorded")
    if reason is not None and not force:
        raise BadInputError("--reason is only used with --force")
    return reason.strip() if force and reason else None


@contextmanager
def _engine(fleet: Fleet) -> Iterator[RolloutEngine]:
    """A rollout engine for one command (its policy engine closed after it)."""
    policy = policy_engine(fleet)
    try:
        yield rollout_engine(fleet, policy)
    finally:
        policy.close()


@app.command()
def rollout(
    version: Annotated[str, typer.Argument(help="The new version to roll out.")],
    manifest: ManifestOption = DEFAULT_PATH,
    show_plan: Annotated[
        bool,
        typer.Option(
            "--plan", help="Print what each step would take at today's traffic; start nothing."
        ),
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Roll VERSION out step by step with analysis; promote or roll back by policy.

    Exit codes: 0 promoted (or paused for `promote`), 3 rolled back, 4 held."""
    loaded = load(manifest)
    validate_cmd.preflight(loaded)
    if show_plan:
        found = rollout_cmd.plan_now(open_fleet(loaded, _progress))
        if found is None:
            raise StateError("nothing is deployed yet", hint="run `swiftdeploy deploy` first")
        _print_plan(version, found, as_json)
        return
    with _locked_fleet(manifest) as fleet:
        _gate(fleet, "canary")
        _run_rollout(fleet, lambda engine: rollout_cmd.start(engine, version))


def _print_plan(version: str, found: Plan, as_json: bool) -> None:
    if as_json:
        _print_json(dataclasses.asdict(found) | {"total_s": found.total_s})
        return
    errors = f"{found.stable_error_rate:.2%}" if found.stable_error_rate is not None else "n/a"
    table = Table(
        "step", "weight", "canary req/s", "canary requests needed", "about", "within max_duration",
        title=f"rollout of {version} at {found.service_rps:.1f} req/s (stable errors {errors})",
    )  # fmt: skip
    for step in found.steps:
        needed = str(step.needed_requests) if step.needed_requests else "- (earlier step's)"
        about = _seconds(step.seconds) if step.seconds is not None else "cannot plan"
        within = "yes" if step.within_limit else "[yellow]no: holds[/]"
        row = (str(step.index + 1), f"{step.weight}%", f"{step.canary_rps:.1f}", needed, about)
        table.add_row(*row, within)
    total = found.total_s
    table.caption = f"whole rollout: about {_seconds(total)}" if total else None
    out.print(table)
    for note in found.notes:
        err.print(f"note: {note}", markup=False)


def _seconds(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.0f}s" if value < 90 else f"{value / 60:.1f} min"


@app.command()
def resume(manifest: ManifestOption = DEFAULT_PATH) -> None:
    """Carry on an interrupted rollout from its persisted phase and step."""
    with _locked_fleet(manifest) as fleet:
        _run_rollout(fleet, rollout_cmd.resume)


@app.command()
def abort(manifest: ManifestOption = DEFAULT_PATH) -> None:
    """Stop a running rollout (its current look finishes), then roll the canary back."""
    loaded = load(manifest)
    stopped = rollout_cmd.abort(lambda: lock_holder(loaded.state_dir))
    if stopped:
        err.print(f"stopped the rollout (pid {stopped})")
    with _locked_fleet(manifest) as fleet:
        if not fleet.store.load().track("canary"):
            out.print("nothing to abort: no canary is running")
            return
        state = rollback_cmd.rollback(fleet, reason="aborted by hand")
    out.print(f"aborted: {_summary(state)}")


def _gate(fleet: Fleet, action: str) -> None:
    engine = policy_engine(fleet)
    try:
        gate_cmd.infrastructure_gate(fleet.loaded, engine, fleet.recorder, action)
    finally:
        engine.close()


def _run_rollout(fleet: Fleet, body: Callable[[RolloutEngine], State]) -> None:
    """Run a rollout loop in the foreground with the live view; SIGTERM lets the
    current look finish and leaves the state consistent for `resume`."""
    stop = threading.Event()
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: stop.set())
    policy = policy_engine(fleet)
    try:
        title = f"{fleet.loaded.manifest.service.name} rollout"
        with RolloutView(err, title) as view:
            engine = rollout_engine(fleet, policy, view.update, stop.is_set)
            state = body(engine)
    finally:
        policy.close()
        signal.signal(signal.SIGTERM, previous)
    message = rollout_cmd.outcome(state)
    out.print(message)
    if stop.is_set() and state.phase not in (Phase.PROMOTED, Phase.ROLLED_BACK):
        raise typer.Exit(ExitCode.INTERRUPTED)


@app.command()
def rollback(manifest: ManifestOption = DEFAULT_PATH) -> None:
    """Send the canary 0% at once and stop its replicas."""
    with _locked_fleet(manifest) as fleet:
        state = rollback_cmd.rollback(fleet)
    out.print(f"rolled back: {_summary(state)}")


@app.command()
def status(
    manifest: ManifestOption = DEFAULT_PATH,
    as_json: JsonOption = False,
    watch: Annotated[bool, typer.Option(help="Refresh until Ctrl-C.")] = False,
    interval: Annotated[float, typer.Option(help="Seconds between refreshes.")] = 2.0,
    window: WindowOption = None,
) -> None:
    """Versions, weights, replicas, health and each track's recent traffic (--window 0:
    none). Reads only."""
    loaded = load(manifest)
    fleet = open_fleet(loaded, _progress)
    span = loaded.manifest.metrics.window if window is None else window
    meter = status_cmd.TrafficMeter(fleet) if span > 0 else None
    if not watch:
        report = status_cmd.collect_status(fleet, meter, span)
        if as_json:
            _print_json(report.as_dict())
        else:
            out.print(_status_table(loaded, report))
            for line in _rollout_lines(report.state):
                out.print(line, markup=False)
        return
    with Live(console=out, auto_refresh=False) as live:
        while True:
            report = status_cmd.collect_status(fleet, meter, span)
            live.update(_status_table(loaded, report), refresh=True)
            time.sleep(interval)


def _status_table(loaded: LoadedManifest, report: status_cmd.StatusReport) -> Table:
    state = report.state
    weight_text = f"{report.router.routes.canary_weight}%" if report.router else "nginx down"
    title = (
        f"{loaded.manifest.service.name} on {loaded.manifest.traffic.listen} | phase "
        f"{state.phase.value} | stable {state.stable_version or '-'} | canary "
        f"{state.canary_version or '-'} at {weight_text}"
    )
    table = Table("replica", "track", "version", "endpoint", "process", "pid", "healthy",
                  "routed", title=title)  # fmt: skip
    for r in report.replicas:
        healthy = "yes" if r.healthy else "[red]no[/]"
        routed = "yes" if r.routed else "no"
        table.add_row(
            r.name, r.track, r.version, r.endpoint, r.process, str(r.pid), healthy, routed
        )
    captions = []
    for track, m in report.traffic.items():
        errors = f"{m.error_rate:.2%}" if m.error_rate is not None else "-"
        p99 = m.latency_ms(0.99)
        latency = f"{p99:.0f} ms" if p99 is not None else "-"
        rps = m.rps or 0.0
        captions.append(f"{track}: {rps:.1f} req/s, 5xx {errors}, p99 {latency}")
    if captions:
        provider = loaded.manifest.metrics.provider
        elapsed = report.traffic["stable"].elapsed_s or 0
        table.caption = "   ".join(captions) + f"   ({provider}, last {elapsed:.1f}s)"
    return table


def _rollout_lines(state: State) -> list[str]:
    """Where a canary's step stands, from its last look: the same words as the live view."""
    if not state.track("canary") or state.last_look is None:
        return []
    look = state.last_look
    lines = [f"last look {time.time() - look.at:.0f}s ago: {look.action}"]
    lines += [f"  {label}: {text}" for label, text in look.progress]
    if state.message:
        lines.append(f"  {state.message}")
    return lines


@app.command()
def chaos(
    manifest: ManifestOption = DEFAULT_PATH,
    track: Annotated[str, typer.Option(help="stable or canary.")] = "canary",
    error_rate: Annotated[
        float | None, typer.Option(help="Fraction of requests to fail, 0-1.")
    ] = None,
    latency_ms: Annotated[float | None, typer.Option(help="Extra latency per request.")] = None,
    duration_s: Annotated[float | None, typer.Option(help="Recover by itself after this.")] = None,
    recover: Annotated[bool, typer.Option(help="Stop injecting.")] = False,
) -> None:
    """Inject errors or latency into a track's replicas (demo service), or recover."""
    if track not in ("stable", "canary"):
        raise click.BadParameter("--track must be stable or canary")
    # No project lock: chaos changes no state, so it can hit a canary mid-rollout.
    fleet = open_fleet(load(manifest), _progress)
    chosen: Track = "canary" if track == "canary" else "stable"
    names = chaos_cmd.set_chaos(fleet, chosen, error_rate, latency_ms, duration_s, recover)
    action = "recovered" if recover else "chaos injected into"
    out.print(f"{action} {', '.join(names)}")


@app.command()
def metrics(
    manifest: ManifestOption = DEFAULT_PATH,
    track: Annotated[str | None, typer.Option(help="stable or canary (default: both).")] = None,
    window: WindowOption = None,
    as_json: JsonOption = False,
) -> None:
    """Each track's requests, errors and latency over the last window of traffic."""
    if track not in (None, "stable", "canary"):
        raise click.BadParameter("--track must be stable or canary")
    loaded = load(manifest)
    fleet = open_fleet(loaded, _progress)
    tracks = [track] if track else ["stable", "canary"]
    span = loaded.manifest.metrics.window if window is None else window
    measured = metrics_cmd.measure(fleet, tracks, span)
    if as_json:
        _print_json({t: m.model_dump(mode="json") for t, m in measured.items()})
        return
    columns = ("track", "status", "requests", "5xx", "error rate", "p50", "p90", "p99", "req/s")
    table = Table(*columns, "window", title=f"metrics ({loaded.manifest.metrics.provider})")
    for name, m in measured.items():
        rate = f"{m.error_rate:.2%}" if m.error_rate is not None else "-"
        quantiles = [m.latency_ms(q) for q in (0.5, 0.9, 0.99)]
        cells = [f"{v:.1f} ms" if v is not None else "-" for v in quantiles]
        rps = f"{m.rps:.1f}" if m.rps is not None else "-"
        table.add_row(name, m.status, str(m.requests), str(m.errors), rate, *cells, rps,
                      f"{m.elapsed_s or 0:.1f}s")  # fmt: skip
    out.print(table)
    for name, m in measured.items():
        if m.detail:
            err.print(f"{name}: {m.detail}", markup=False)


policy_app = typer.Typer(
    help="Test, check and ask the project's Rego policies.", no_args_is_help=True
)
app.add_typer(policy_app, name="policy")


@policy_app.command("test")
def policy_test(manifest: ManifestOption = DEFAULT_PATH) -> None:
    """Run `opa test` on the policy directory."""
    passed, report = policy_cmd.run_tests(load(manifest))
    out.print(report, markup=False)
    if not passed:
        raise typer.Exit(ExitCode.OPERATIONAL)


@policy_app.command("check")
def policy_check(manifest: ManifestOption = DEFAULT_PATH) -> None:
    """Compile the policies; report every error as file:line: message (exit 2)."""
    problems = policy_cmd.check(load(manifest))
    for problem in problems:
        err.print(problem, markup=False)
    if problems:
        raise typer.Exit(ExitCode.BAD_INPUT)
    out.print("policies compile")


@policy_app.command("eval")
def policy_eval(
    input_file: Annotated[Path, typer.Option("--input", help="JSON policy input.")],
    manifest: ManifestOption = DEFAULT_PATH,
    engine: Annotated[str | None, typer.Option(help="opa or embedded (default: manifest).")] = None,
    package: Annotated[str, typer.Option(help="Rego package.")] = "swiftdeploy.canary",
) -> None:
    """Print the decision a policy engine gives for an input."""
    loaded = load(manifest)
    name = engine or loaded.manifest.policy.engine
    if name not in ("opa", "embedded"):
        raise click.BadParameter("--engine must be opa or embedded")
    decision = policy_cmd.evaluate(loaded, input_file, name, package)
    _print_json(decision.model_dump(mode="json"))
    if not decision.allow:
        raise typer.Exit(ExitCode.DENIED)


@app.command()
def teardown(manifest: ManifestOption = DEFAULT_PATH) -> None:
    """Stop every process this project started (replicas, nginx, supervisord)."""
    loaded = load(manifest)
    with project_lock(loaded.state_dir):
        open_audit_log(loaded).append(
            "command", rollout_id=StateStore(loaded.state_dir).load().rollout_id
        )
        runtime = create_runtime("local", loaded.state_dir)
        pids = teardown_cmd.teardown(runtime, StateStore(loaded.state_dir))
    out.print(f"stopped {len(pids)} processes")


def run(argv: list[str] | None = None) -> int:
    """Run the CLI and return its exit code; the only place errors become exit codes."""
    try:
        result = app(args=argv, standalone_mode=False)
    except SwiftDeployError as exc:
        print(f"swiftdeploy: error: {exc.one_line()}", file=sys.stderr)
        return int(exc.exit_code)
    except (KeyboardInterrupt, click.exceptions.Abort):
        print("swiftdeploy: interrupted; state is consistent, re-run to continue", file=sys.stderr)
        return int(ExitCode.INTERRUPTED)
    except click.exceptions.Exit as exc:
        return int(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        return int(ExitCode.BAD_INPUT) if isinstance(exc, click.UsageError) else exc.exit_code
    except Exception:
        log = Path(tempfile.gettempdir()) / "swiftdeploy-crash.log"
        log.write_text(traceback.format_exc(), encoding="utf-8")
        print(f"swiftdeploy: internal error; traceback written to {log}", file=sys.stderr)
        return int(ExitCode.OPERATIONAL)
    return int(result) if isinstance(result, int) else 0


def main() -> None:
    sys.exit(run())
