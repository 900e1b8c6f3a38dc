"""`swiftdeploy ci github`: flag wiring only; the work is in `swiftdeploy.commands.ci`."""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from swiftdeploy.cli.app import app
from swiftdeploy.cli.common import DEFAULT_PATH, ManifestOption, printable
from swiftdeploy.errors import BadInputError

if TYPE_CHECKING:
    from swiftdeploy.commands.ci import CiResult

ci_app = typer.Typer(
    name="ci",
    help="Run a rollout as a CI step: outputs, a summary, the rollout's exit code.",
    no_args_is_help=True,
)
app.add_typer(ci_app, name="ci")


@ci_app.command("github")
def github(
    version: Annotated[str, typer.Argument(help="The version (letters, digits, . _ -).")],
    manifest: ManifestOption = DEFAULT_PATH,
    out_dir: Annotated[
        Path | None,
        typer.Option(
            "--out",
            metavar="DIR",
            help="Where the events file and the report go (default: $RUNNER_TEMP/swiftdeploy).",
        ),
    ] = None,
    more: Annotated[
        str,
        typer.Option(
            "--rollout-args",
            metavar="ARGS",
            help="More arguments for `rollout`, one shell-quoted string (e.g. '--verbose').",
        ),
    ] = "",
) -> None:
    """Roll VERSION out as a GitHub Actions step (the repository's action.yml runs this):
    `rollout --wait` with its events to a file and, one line each as they come, to the
    log, then the step's outputs ($GITHUB_OUTPUT) and job summary ($GITHUB_STEP_SUMMARY);
    the exit code is the rollout's (0 promoted or paused for `promote`, 3 rolled back,
    4 held; 1 or 2 when it could not run, or was refused: outputs and summary say so)."""
    from swiftdeploy.commands import ci
    from swiftdeploy.errors import SwiftDeployError
    from swiftdeploy.manifest import require_version

    github_files = ci.github_files(os.environ)  # without them, nothing can be written
    try:
        require_version(version, "VERSION")
        request = ci.CiRequest(version, manifest, _out_dir(out_dir), ci.rollout_args(more))
    except SwiftDeployError as exc:  # refused: the outputs and summary still say so
        ci.refuse(version, exc, github_files)
        raise
    # the rollout's lines, its events and `audit why` hold recorded text (reasons people
    # typed): no line of theirs may act as a workflow command (::set-output, ::add-mask)
    token = secrets.token_hex(16)
    typer.echo(f"::stop-commands::{token}")
    try:
        result = ci.run_ci(request, github_files)
        _say(result)
    finally:
        typer.echo(f"::{token}::")
    if result.exit_code:
        raise typer.Exit(result.exit_code)


def _out_dir(given: Path | None) -> Path:
    if given is not None:
        return given
    runner_temp = os.environ.get("RUNNER_TEMP")
    if not runner_temp:
        raise BadInputError("--out DIR is needed where RUNNER_TEMP is not set")
    return Path(runner_temp) / "swiftdeploy"


def _say(result: CiResult) -> None:
    """The outcome, `audit why` and where the files are, in the log (the rollout's own
    lines above end with its outcome or error line)."""
    typer.echo(f"outcome: {result.outcome} (exit code {result.exit_code})")
    for line in result.why:
        typer.echo(f"  {printable(line)}")
    for warning in result.warnings:
        typer.echo(f"swiftdeploy: warning: {printable(warning)}", err=True)
    if result.report is not None:
        typer.echo(f"report: {result.report}")
    if result.events is not None:
        typer.echo(f"events: {result.events}")
