"""`swiftdeploy audit`: flag wiring only; the work is in `swiftdeploy.commands.audit`.

Errors are SwiftDeployError subclasses, which the main handler prints as one line with
their exit code (a failed verify exits 1).
"""

from __future__ import annotations

import json
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from swiftdeploy.cli.app import app
from swiftdeploy.cli.common import (
    DEFAULT_PATH,
    ManifestOption,
    choice,
    printable,
    read_manifest,
)
from swiftdeploy.errors import AuditTamperedError

if TYPE_CHECKING:
    from swiftdeploy.commands.audit import Source

audit_app = typer.Typer(
    name="audit",
    help="Verify, explain and export the tamper-evident audit trail.",
    no_args_is_help=True,
)
app.add_typer(audit_app, name="audit")


class ExportFormat(StrEnum):
    JSON = "json"
    CSV = "csv"
    OPA_DECISION_LOG = "opa-decision-log"


OutputOption = Annotated[
    Path | None, typer.Option("--output", "-o", help="Write here instead of stdout.")
]
TrailOption = Annotated[
    Path | None,
    typer.Option(
        "--trail",
        help="A trail file to read instead of the project's (e.g. the judge's audit.path).",
    ),
]


def _trail(manifest: Path, trail: Path | None = None) -> Source:
    if trail is not None:  # no manifest needed: the judge's trail, a copy kept elsewhere
        return trail
    from swiftdeploy.commands.audit import trail_of

    return trail_of(read_manifest(manifest))


def _warn(warnings: list[str]) -> None:
    for warning in warnings:
        typer.echo(f"swiftdeploy: warning: {warning}", err=True)


@audit_app.command("verify")
def verify(
    manifest: ManifestOption = DEFAULT_PATH,
    anchor: Annotated[
        str | None,
        typer.Option(help="A head hash kept elsewhere; the trail must still contain it."),
    ] = None,
    checkpoint: Annotated[
        Path | None,
        typer.Option(
            help="A file `audit checkpoint` wrote; the trail must still contain its head."
        ),
    ] = None,
    key: Annotated[
        str | None,
        typer.Option(
            "--key",
            help="The ed25519:... public key the checkpoint must be signed with "
            "(default: this user's signing key, when there is one).",
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
    trail: TrailOption = None,
) -> None:
    """Check the chain, every record's MAC and the head file; name the first problem."""
    from swiftdeploy.commands.audit import verify_trail

    result = verify_trail(_trail(manifest, trail), anchor, checkpoint, key)
    if as_json:
        typer.echo(json.dumps(result.to_dict(), indent=2))
    else:
        for line in result.lines():
            typer.echo(printable(line))
    if not result.ok:
        hint = (
            "restore the trail from a copy you trust; do not act on it until it verifies"
            if result.tampered
            else "an append was interrupted; see above how to cut the torn bytes off"
        )
        raise AuditTamperedError(result.summary(), hint=hint)


@audit_app.command("checkpoint")
def checkpoint(
    manifest: ManifestOption = DEFAULT_PATH,
    output: OutputOption = None,
    trail: TrailOption = None,
) -> None:
    """Sign the trail's head (record count, last hash, time) for someone else to keep."""
    from swiftdeploy.commands.audit import make_checkpoint
    from swiftdeploy.fsutil import atomic_write

    made = make_checkpoint(_trail(manifest, trail))
    if output is None:
        typer.echo(made.to_text(), nl=False)
    else:
        atomic_write(output, made.to_text())
        typer.echo(f"wrote {output}")
    typer.echo(
        f"checkpoint of record {made.count} (head {made.head}), signed by {made.public_key}; "
        "check it later with `swiftdeploy audit verify --checkpoint FILE --key "
        f"{made.public_key}`",
        err=True,
    )


@audit_app.command("adopt")
def adopt(manifest: ManifestOption = DEFAULT_PATH) -> None:
    """Seal a trail written before swiftdeploy kept a head file, once its chain verifies."""
    from swiftdeploy.commands.audit import adopt as adopt_trail

    record = adopt_trail(read_manifest(manifest))
    if record is None:
        typer.echo("the audit trail verifies as it is: nothing to adopt")
    else:
        typer.echo(
            f"adopted {record['adopted_records']} records (head {record['adopted_head']}); "
            f"sealed by record {record['seq']}"
        )


@audit_app.command("report")
def report(
    manifest: ManifestOption = DEFAULT_PATH,
    rollout: Annotated[str | None, typer.Option(help="Only this rollout id.")] = None,
    out: Annotated[
        Path | None,
        typer.Option(help="Directory for the report (default: reports/ next to the trail)."),
    ] = None,
    trail: TrailOption = None,
) -> None:
    """Write audit_report.md and a self-contained audit_report.html with charts."""
    from swiftdeploy.commands.audit import write_report

    files = write_report(_trail(manifest, trail), out, rollout)
    _warn(files.warnings)
    typer.echo(f"wrote {files.markdown}")
    typer.echo(f"wrote {files.html}")


@audit_app.command("why")
def why(
    rollout_id: Annotated[
        str | None, typer.Argument(help="A rollout id (default: the last rollout).")
    ] = None,
    manifest: ManifestOption = DEFAULT_PATH,
    trail: TrailOption = None,
) -> None:
    """Why the last (or given) rollout was promoted, rolled back or is still going."""
    from swiftdeploy.commands.audit import why as explain

    lines, warnings = explain(_trail(manifest, trail), rollout_id)
    _warn(warnings)
    for line in lines:
        typer.echo(printable(line))


@audit_app.command("export")
def export(
    export_format: Annotated[
        ExportFormat,
        typer.Option("--format", **choice(ExportFormat), help="json, csv or opa-decision-log."),
    ],
    manifest: ManifestOption = DEFAULT_PATH,
    output: OutputOption = None,
    trail: TrailOption = None,
) -> None:
    """Print the verified records as JSON, CSV or OPA decision-log events."""
    from swiftdeploy.commands.audit import export as export_records
    from swiftdeploy.fsutil import atomic_write

    text, warnings = export_records(_trail(manifest, trail), export_format.value)
    _warn(warnings)
    if output is None:
        typer.echo(text, nl=False)
    else:
        atomic_write(output, text)
        typer.echo(f"wrote {output}")
