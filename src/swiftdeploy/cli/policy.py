"""`swiftdeploy policy test | check | eval`: the project's Rego policies."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from swiftdeploy.cli.app import app
from swiftdeploy.cli.common import (
    DEFAULT_PATH,
    ManifestOption,
    choice,
    err,
    out,
    print_json,
    read_manifest,
)
from swiftdeploy.errors import ExitCode

policy_app = typer.Typer(
    help="Test, check and ask the project's Rego policies.", no_args_is_help=True
)
app.add_typer(policy_app, name="policy")


class EngineName(StrEnum):
    OPA = "opa"
    EMBEDDED = "embedded"


@policy_app.command("test")
def policy_test(manifest: ManifestOption = DEFAULT_PATH) -> None:
    """Run `opa test` on the policy directory."""
    from swiftdeploy.commands.policy import run_tests

    passed, report = run_tests(read_manifest(manifest))
    out.print(report, markup=False)
    if not passed:
        raise typer.Exit(ExitCode.OPERATIONAL)


@policy_app.command("check")
def policy_check(manifest: ManifestOption = DEFAULT_PATH) -> None:
    """Compile the policies; report every error as file:line: message (exit 2)."""
    from swiftdeploy.commands.policy import check

    problems = check(read_manifest(manifest))
    for problem in problems:
        err.print(problem, markup=False)
    if problems:
        raise typer.Exit(ExitCode.BAD_INPUT)
    out.print("policies compile")


@policy_app.command("eval")
def policy_eval(
    input_file: Annotated[Path, typer.Option("--input", help="JSON policy input.")],
    manifest: ManifestOption = DEFAULT_PATH,
    engine: Annotated[
        EngineName | None,
        typer.Option(**choice(EngineName), help="opa or embedded (default: the manifest's)."),
    ] = None,
    package: Annotated[str, typer.Option(help="Rego package.")] = "swiftdeploy.canary",
) -> None:
    """Print the decision a policy engine gives for an input."""
    from swiftdeploy.commands.policy import evaluate

    loaded = read_manifest(manifest)
    name = engine.value if engine else loaded.manifest.policy.engine
    decision = evaluate(loaded, input_file, name, package)
    print_json(decision.model_dump(mode="json"))
    if not decision.allow:
        raise typer.Exit(ExitCode.DENIED)
