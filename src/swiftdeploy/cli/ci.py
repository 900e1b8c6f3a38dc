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
    `rollout --wait` with its events to a file, then the step's outputs ($GITHUB_OUTPUT)
    and job summary ($GITHUB_STEP_SUMMARY); the exit code is the rollout's (0 promoted
    or paused for `promote`, 3 rolled back, 4 held; 1 or 2 when it could not run)."""
    from swiftdeploy.commands import ci
    from swiftdeploy.manifest import require_version

    require_version(version, "VERSION")
    github_files = ci.github_files(os.environ)
    request = ci.CiRequest(version, manifest, _out_dir(out_dir), ci.rollout_args(more))
    # the rollout's lines and `audit why` hold recorded text (reasons people typed): no
    # line of theirs may act as a workflow command (::set-output, ::add-mask, ...)
    token = secrets.token_hex(16)
    typer.echo(f"::stop-commands::{token}")
    try:
        result = ci.run_ci(request, github_files)
        _say(result)
    finally:
        typer.echo(f"::{token}::")
    _events(result.events)
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
    typer.echo(f"events: {result.events}")


def _events(path: Path) -> None:
    """The events file in the log too, in a group folded by default (each line a JSON
    object: none can start a workflow command)."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError:
        return  # the rollout did not start: the log above says why
    typer.echo(f"::group::{len(lines)} events ({path})")
    for line in lines:
        typer.echo(line)
    typer.echo("::endgroup::")
