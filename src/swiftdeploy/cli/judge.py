"""`swiftdeploy judge`: flag wiring only; the work is in `swiftdeploy.commands.judge`."""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer

from swiftdeploy.cli.app import app
from swiftdeploy.cli.common import JsonOption, out, printable

judge_app = typer.Typer(
    name="judge",
    help="Judge another controller's canary (Argo Rollouts, Flagger, Kargo): docs/judge.md.",
    no_args_is_help=True,
)
app.add_typer(judge_app, name="judge")

ConfigOption = Annotated[
    Path, typer.Option("-c", "--config", help="The judge's config file.", show_default=True)
]
DEFAULT_CONFIG = Path("judge.yaml")


def _log(line: str) -> None:
    stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
    print(f"{stamp} {printable(line)}", file=sys.stderr, flush=True)


@judge_app.command("init")
def init(
    directory: Annotated[Path, typer.Argument(help="Where to write judge.yaml.")] = Path(),
    force: Annotated[bool, typer.Option(help="Overwrite an existing judge.yaml.")] = False,
) -> None:
    """Write a commented judge.yaml and the shipped canary policy beside it."""
    from swiftdeploy.commands.judge import init as init_judge

    for path in init_judge(directory, force):
        out.print(f"wrote {path}", markup=False)


@judge_app.command("serve")
def serve(
    config: ConfigOption = DEFAULT_CONFIG,
    listen: Annotated[
        str | None, typer.Option(help="host:port to listen on (default: the config's).")
    ] = None,
    secrets_dir: Annotated[
        str | None, typer.Option(help="Where callers' Secrets are mounted (default: the config's).")
    ] = None,
) -> None:
    """Answer Argo's web metric and Flagger's webhooks until SIGTERM; one log line a call."""
    from swiftdeploy.commands.judge import serve_until_stopped
    from swiftdeploy.judge.config import load_judge, with_overrides

    loaded = with_overrides(load_judge(config), listen=listen, secrets_dir=secrets_dir)
    serve_until_stopped(loaded, _log)


@judge_app.command("install")
def install(
    config: ConfigOption = DEFAULT_CONFIG,
    namespace: Annotated[str, typer.Option(help="The judge's namespace.")] = "swiftdeploy",
    image: Annotated[
        str | None, typer.Option(help="The image (default: `swiftdeploy driver-image`'s).")
    ] = None,
    tokens_secret: Annotated[
        str, typer.Option(help="The Secret holding the callers' {env: NAME} tokens, by NAME.")
    ] = "swiftdeploy-judge",  # noqa: S107 - a Secret's name, not a secret
    print_only: Annotated[
        bool, typer.Option("--print", help="Print the YAML (the only mode for now).")
    ] = True,
) -> None:
    """Print the judge's Deployment, Service, ServiceAccount (no API token, no Role) and
    ConfigMap for `kubectl apply -f -`."""
    from swiftdeploy.commands.judge import install_yaml
    from swiftdeploy.commands.kube_install import DEFAULT_IMAGE
    from swiftdeploy.judge.config import load_judge

    text = install_yaml(load_judge(config), namespace, image or DEFAULT_IMAGE, tokens_secret)
    out.print(text, markup=False, end="")


@judge_app.command("replay")
def replay(
    config: ConfigOption = DEFAULT_CONFIG,
    trail: Annotated[
        Path | None, typer.Option(help="The judge's trail (default: the config's audit.path).")
    ] = None,
    policies: Annotated[
        Path | None, typer.Option(help="Another policy directory to put the answers to.")
    ] = None,
    alpha: Annotated[float | None, typer.Option(help="Another policy.alpha.")] = None,
    beta: Annotated[float | None, typer.Option(help="Another policy.beta.")] = None,
    detect_errors: Annotated[
        str | None, typer.Option(help="Another policy.detect.errors, e.g. +0.5%.")
    ] = None,
    detect_latency: Annotated[
        str | None, typer.Option(help="Another policy.detect.latency, e.g. +50ms.")
    ] = None,
    max_error_rate: Annotated[
        float | None, typer.Option(help="Another thresholds.max_error_rate.")
    ] = None,
    max_p99_ms: Annotated[float | None, typer.Option(help="Another thresholds.max_p99_ms.")] = None,
    all_rows: Annotated[bool, typer.Option("--all", help="Every answer, not only flips.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Put the judge's recorded answers to another policy or other settings and show
    which would flip (exit 0 either way)."""
    from swiftdeploy.commands.judge import replay_trail
    from swiftdeploy.judge.config import load_judge

    overrides: dict[str, Any] = {}
    if alpha is not None:
        overrides["alpha"] = alpha
    if beta is not None:
        overrides["beta"] = beta
    detect = {"errors": detect_errors, "latency": detect_latency}
    if any(value is not None for value in detect.values()):
        overrides["detect"] = {k: v for k, v in detect.items() if v is not None}
    thresholds = {"max_error_rate": max_error_rate, "max_p99_ms": max_p99_ms}
    if any(value is not None for value in thresholds.values()):
        overrides["thresholds"] = {k: v for k, v in thresholds.items() if v is not None}
    report = replay_trail(load_judge(config), trail=trail, policies=policies, overrides=overrides)
    for warning in report.warnings:
        typer.echo(f"swiftdeploy: warning: {printable(warning)}", err=True)
    rows = report.rows if all_rows else report.flips
    if as_json:
        summary = {"answers": len(report.rows), "flips": len(report.flips)}
        typer.echo(json.dumps({**summary, "rows": [row.as_json() for row in rows]}, indent=2))
        return
    out.print(f"{len(report.rows)} answers replayed, {len(report.flips)} would flip", markup=False)
    if rows:
        out.print(
            f"{'analysis':<44} {'look':>4} {'step':>4} {'before':<9} {'after':<9} why", markup=False
        )
    for row in rows:
        why = "; ".join(row.reasons)
        out.print(
            printable(
                f"{row.analysis:<44} {row.look:>4} {row.step + 1:>4} {row.before:<9}"
                f" {row.after:<9} {why}"
            ),
            markup=False,
        )
