"""The project's lifecycle and what it shows: init, validate, schema, doctor, deploy,
status, metrics, chaos, teardown, demo-image. Parsing and printing only; the work is in
`commands/`, imported where used so a command pays only for what it runs."""

from __future__ import annotations

import time
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape
from rich.table import Table

from swiftdeploy.cli.app import MANIFEST_ENV, app
from swiftdeploy.cli.common import (
    DEFAULT_PATH,
    JsonOption,
    ManifestOption,
    WindowOption,
    choice,
    command,
    duration_parser,
    err,
    out,
    print_json,
    read_manifest,
    summary,
    warn,
)
from swiftdeploy.durations import format_ago, format_duration
from swiftdeploy.errors import BadInputError, ExitCode

if TYPE_CHECKING:
    from swiftdeploy.commands.status import StatusReport
    from swiftdeploy.fleet import Fleet
    from swiftdeploy.manifest import LoadedManifest
    from swiftdeploy.state import State


class Runtime(StrEnum):
    LOCAL = "local"
    DOCKER = "docker"
    KUBERNETES = "kubernetes"


class TrackName(StrEnum):
    STABLE = "stable"
    CANARY = "canary"


@app.command()
def init(
    directory: Annotated[
        Path | None,
        typer.Argument(help="Where to write the project (default: here).", show_default=False),
    ] = None,
    manifest: ManifestOption = DEFAULT_PATH,
    listen: Annotated[str, typer.Option(help="Public HOST:PORT for nginx.")] = "127.0.0.1:8080",
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing manifest.")] = False,
    runtime: Annotated[
        Runtime,
        typer.Option(
            **choice(Runtime), help="What runs the replicas: local, docker or kubernetes."
        ),
    ] = Runtime.LOCAL,
) -> None:
    """Write a commented manifest that runs the bundled demo service, plus policies/
    beside it; the manifest is the one -f or $SWIFTDEPLOY_MANIFEST names (a relative
    name inside DIRECTORY), else swiftdeploy.yaml."""
    from swiftdeploy.commands.init import init_project

    if directory is not None and manifest.is_absolute():
        raise BadInputError(
            f"init got both a DIRECTORY ({directory}) and the manifest {manifest}"
            f" (-f or ${MANIFEST_ENV})",
            hint="give DIRECTORY with a relative -f FILE, or -f alone",
        )
    for path in init_project(directory or Path(), listen, force, runtime.value, manifest):
        out.print(f"wrote {escape(str(path))}")


@app.command()
def validate(manifest: ManifestOption = DEFAULT_PATH, as_json: JsonOption = False) -> None:
    """Check the manifest: schema, command, ports, and the rendered nginx config (nginx -t)."""
    from swiftdeploy.commands.validate import account_warnings, evidence_warnings, preflight
    from swiftdeploy.rollout.capacity import manifest_loads, warnings

    loaded = read_manifest(manifest)
    checks = preflight(loaded)
    # not fatal: a canary replica busier than a stable one was is a choice, said once;
    # so is a provider that counts what other local users send the replicas, and an
    # image whose uid a host account shares
    found = warnings(manifest_loads(loaded.manifest)) + evidence_warnings(loaded)
    found += account_warnings(loaded)
    if as_json:
        print_json(
            {"manifest": str(loaded.path), "valid": True, "checks": checks, "warnings": found}
        )
        return
    for check in checks:
        out.print(f"[green]ok[/] {escape(check)}")
    warn(found)
    out.print(f"{escape(str(loaded.path))} is valid")


@app.command()
def schema() -> None:
    """Print the manifest's JSON Schema (draft 2020-12), for editors and CI validators;
    the same as the package's schemas/manifest.v1.schema.json."""
    from swiftdeploy.commands.schema import manifest_schema

    print_json(manifest_schema())


@app.command()
def doctor(manifest: ManifestOption = DEFAULT_PATH, as_json: JsonOption = False) -> None:
    """Versions and health of every part: nginx, lua, supervisord, Prometheus, hey, OPA."""
    from swiftdeploy.commands.doctor import processes_of, run_checks

    loaded = read_manifest(manifest) if manifest.is_file() else None
    checks = run_checks(loaded)
    processes = processes_of(loaded) if loaded else []
    if as_json:
        print_json({"checks": [c.__dict__ for c in checks], "processes": processes})
    else:
        table = Table("part", "ok", "detail")
        for check in checks:
            ok = "[green]yes[/]" if check.ok else "[red]no[/]"
            table.add_row(escape(check.part), ok, escape(check.detail))
        out.print(table)
        for process in processes:
            out.print(
                f"process {process['name']}: {process['state']} (pid {process['pid']})",
                markup=False,
            )
    if not all(c.ok for c in checks):
        raise typer.Exit(ExitCode.OPERATIONAL)


@app.command()
def deploy(
    version: Annotated[
        str | None,
        typer.Argument(
            help="The version to deploy (default: service.version).", show_default=False
        ),
    ] = None,
    manifest: ManifestOption = DEFAULT_PATH,
    old_version: Annotated[
        str | None, typer.Option("--version", hidden=True, help="Deprecated: deploy VERSION.")
    ] = None,
) -> None:
    """First deploy, or a plain rolling replace of the stable version."""
    from swiftdeploy.commands.deploy import deploy as deploy_version
    from swiftdeploy.manifest import require_version

    if old_version is not None:  # the old spelling, easily taken for the global --version
        warn(["`deploy --version V` is deprecated; write `deploy V`"])
    loaded = read_manifest(manifest)
    target = require_version(
        version or old_version or loaded.manifest.service.version, "deploy VERSION"
    )
    with command(loaded, preflight=True, version=target, lock=True, gate="deploy") as context:
        state = deploy_version(context.fleet, target)
    settings = loaded.manifest
    served = f"listening on {settings.traffic.listen}"
    if settings.runtime == "kubernetes":  # the cluster's Gateway serves it, not a listener here
        served = f"routed by HTTPRoute {settings.kubernetes.namespace}/{settings.service.name}"
    out.print(f"deployed {target}: {summary(state)}; {served}", markup=False)


@app.command()
def status(
    manifest: ManifestOption = DEFAULT_PATH,
    as_json: JsonOption = False,
    watch: Annotated[bool, typer.Option(help="Refresh until Ctrl-C.")] = False,
    interval: Annotated[
        float,
        typer.Option(
            parser=duration_parser(floor=0.1),
            metavar="DURATION",
            help="Time between refreshes, e.g. 2s or 1m30s (at least 100ms).",
        ),
    ] = 2.0,
    window: WindowOption = None,
) -> None:
    """Versions, weights, replicas, health and each track's recent traffic (--window 0:
    none); for a canary, where its step stands. Reads only."""
    with command(read_manifest(manifest)) as context:
        _status(context.fleet, as_json, watch, interval, window)


def _status(
    fleet: Fleet, as_json: bool, watch: bool, interval: float, window: float | None
) -> None:
    from rich.live import Live

    from swiftdeploy.commands.status import TrafficMeter, collect_status

    loaded = fleet.loaded
    span = loaded.manifest.metrics.window if window is None else window
    meter = TrafficMeter(fleet) if span > 0 else None
    if not watch:
        report = collect_status(fleet, meter, span)
        if as_json:
            print_json(report.as_dict())
        else:
            out.print(_status_table(loaded, report))
            lines = driver_lines(report) + rollout_lines(report.state)
            for line in lines + notification_lines(report):
                out.print(line, markup=False)
            for warning in report.warnings:
                out.print(f"warning: {warning}", markup=False)
        return
    with Live(console=out, auto_refresh=False) as live:
        while True:
            report = collect_status(fleet, meter, span)
            live.update(_status_table(loaded, report), refresh=True)
            time.sleep(interval)


def _status_table(loaded: LoadedManifest, report: StatusReport) -> Table:
    state = report.state
    if not state.stable_version:
        tracks = "not deployed (`swiftdeploy deploy VERSION`)"
    elif not state.canary_version:
        tracks = f"stable {state.stable_version} | no canary"
    else:
        weight = f"{report.weight}%" if report.weight is not None else "? (router not answering)"
        tracks = f"stable {state.stable_version} | canary {state.canary_version} at {weight}"
    title = escape(
        f"{loaded.manifest.service.name} on {loaded.manifest.traffic.listen} | phase "
        f"{state.phase.value} | {tracks}"
    )
    table = Table("replica", "track", "version", "endpoint", "process", "pid", "healthy",
                  "routed", title=title)  # fmt: skip
    for r in report.replicas:
        healthy = "yes" if r.healthy else "[red]no[/]"
        routed = "yes" if r.routed else "no"
        cells = (r.name, r.track, r.version, r.endpoint, r.process, str(r.pid))
        table.add_row(*(escape(cell) for cell in cells), healthy, routed)
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
        table.caption = "   ".join(captions) + f"   ({provider}, last {format_duration(elapsed)})"
    return table


def driver_lines(report: StatusReport) -> list[str]:
    """Who drives the rollout, or that nothing does while the canary takes traffic."""
    driver, state = report.driver, report.state
    if driver is None:
        return []
    if driver.alive:
        since = f", since {_ago(driver.since)}" if driver.since is not None else ""
        restarts = f", restarted {driver.restarts}x" if driver.restarts else ""
        look = f"; last look {_ago(driver.last_look_at)}" if driver.last_look_at else ""
        who = f"pid {driver.pid}"
        if driver.holder:
            who = f"the driver in the cluster, {driver.holder} ({who})"
        return [f"driven by {who}{since}{restarts}{look}"]
    from swiftdeploy.commands.driver import driving

    if not driving(state):  # a cluster between rollouts, with no driver installed
        return [f"no driver: {driver.exited}"]
    why = f" ({driver.exited})" if driver.exited else ""
    return [
        f"no driver{why}: the canary takes {state.canary_weight}% with nothing deciding;"
        " `swiftdeploy resume` or `swiftdeploy rollback`"
    ]


def notification_lines(report: StatusReport) -> list[str]:
    """Each sink that has something to say: events pending, dead letters."""
    lines = []
    for sink in report.notifications:
        retrying = f" (the first tried {sink.attempts}x)" if sink.attempts else ""
        pending = f"{sink.pending} pending{retrying}" if sink.pending else "up to date"
        dead = f", {len(sink.dead_letters)} dead letter(s)" if sink.dead_letters else ""
        lines.append(f"notifications to {sink.name} ({sink.kind}): {pending}{dead}")
        lines += [
            f"  dead letter: {d.event_type} (record {d.seq}) after {d.attempts} attempt(s):"
            f" {d.error}"
            for d in sink.dead_letters[-3:]
        ]
    return lines


def _ago(at: float) -> str:
    return format_ago(at, time.time())


def rollout_lines(state: State, now: float | None = None) -> list[str]:
    """Where a canary's step stands, from its last look (the same words as the live
    view), and what it waits for when a gating hook holds it, with or without a look
    (a `pre-rollout` hook is asked before the first one)."""
    now = time.time() if now is None else now
    lines: list[str] = []
    look = state.last_look
    if state.track("canary") and look is not None:
        lines.append(f"last look {format_ago(look.at, now)}: {look.action}")
        lines += [f"  {label}: {text}" for label, text in look.progress]
        if state.message and state.awaiting is None:  # else: said below, with times
            lines.append(f"  {state.message}")
    if state.awaiting is not None:
        lines.append(state.awaiting.describe(state.hooks, now))
    return lines


@app.command()
def chaos(
    manifest: ManifestOption = DEFAULT_PATH,
    track: Annotated[
        TrackName, typer.Option(**choice(TrackName), help="stable or canary.")
    ] = TrackName.CANARY,
    error_rate: Annotated[
        float | None, typer.Option(min=0.0, max=1.0, help="Fraction of requests to fail, 0-1.")
    ] = None,
    latency_ms: Annotated[
        float | None, typer.Option(min=0.0, help="Extra latency per request.")
    ] = None,
    duration_s: Annotated[
        float | None,
        typer.Option(
            "--duration",
            "--duration-s",
            parser=duration_parser(),
            metavar="DURATION",
            help="Recover by itself after this, e.g. 90s or 1m30s (plain seconds too).",
        ),
    ] = None,
    recover: Annotated[bool, typer.Option(help="Stop injecting.")] = False,
) -> None:
    """Inject errors or latency into a track's replicas (demo service), or recover."""
    from swiftdeploy.commands.chaos import set_chaos

    # No project lock: chaos changes no state, so it can hit a canary mid-rollout.
    with command(read_manifest(manifest)) as context:
        names = set_chaos(
            context.fleet,
            "canary" if track == TrackName.CANARY else "stable",
            error_rate,
            latency_ms,
            duration_s,
            recover,
        )
    action = "recovered" if recover else "chaos injected into"
    out.print(f"{action} {', '.join(names)}", markup=False)


@app.command()
def metrics(
    manifest: ManifestOption = DEFAULT_PATH,
    track: Annotated[
        TrackName | None,
        typer.Option(**choice(TrackName), help="stable or canary (default: both)."),
    ] = None,
    window: WindowOption = None,
    as_json: JsonOption = False,
) -> None:
    """Each track's requests, errors and latency over the last window of traffic."""
    from swiftdeploy.commands.metrics import measure

    loaded = read_manifest(manifest)
    tracks = [track.value] if track else ["stable", "canary"]
    span = loaded.manifest.metrics.window if window is None else window
    with command(loaded) as context:
        measured = measure(context.fleet, tracks, span)
    if as_json:
        print_json({t: m.model_dump(mode="json") for t, m in measured.items()})
        return
    columns = ("track", "status", "requests", "5xx", "error rate", "p50", "p90", "p99", "req/s")
    table = Table(*columns, "window", title=f"metrics ({loaded.manifest.metrics.provider})")
    for name, m in measured.items():
        rate = f"{m.error_rate:.2%}" if m.error_rate is not None else "-"
        quantiles = [m.latency_ms(q) for q in (0.5, 0.9, 0.99)]
        cells = [f"{v:.1f} ms" if v is not None else "-" for v in quantiles]
        rps = f"{m.rps:.1f}" if m.rps is not None else "-"
        table.add_row(name, m.status, str(m.requests), str(m.errors), rate, *cells, rps,
                      format_duration(m.elapsed_s or 0))  # fmt: skip
    out.print(table)
    for name, m in measured.items():
        if m.detail:
            err.print(f"{name}: {m.detail}", markup=False)


@app.command()
def teardown(manifest: ManifestOption = DEFAULT_PATH) -> None:
    """Stop every process this project started (replicas, nginx, supervisord)."""
    from swiftdeploy.commands.driver import stop_driver
    from swiftdeploy.commands.teardown import teardown as stop_all

    loaded = read_manifest(manifest)
    stop_driver(loaded)  # it holds the project's lock while it drives
    with command(loaded, lock=True) as context:
        pids = stop_all(context.fleet)
    out.print(f"stopped {len(pids)} processes")


@app.command("demo-image")
def demo_image(
    tags: Annotated[
        list[str] | None,
        typer.Argument(help="Tags to build (default: latest)."),
    ] = None,
) -> None:
    """Build the demo service as a container image (swiftdeploy-demo:TAG), no registry needed."""
    from swiftdeploy.commands.demo_image import build_demo_image

    refs = build_demo_image(tags or ["latest"], lambda line: err.print(line, markup=False))
    out.print(f"ready: {' '.join(refs)}", markup=False)
