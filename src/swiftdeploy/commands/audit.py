"""`swiftdeploy audit ...`: verify, report, why and export over a project's audit trail.

Plain functions over paths; the flag wiring is in `swiftdeploy.cli.audit`. A report,
`why` or an export reads only a trail whose chain verifies: a torn tail (an
interrupted append) is left out with a warning, anything else is refused.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from swiftdeploy.audit import report as audit_report
from swiftdeploy.audit.log import AuditLog, Record
from swiftdeploy.audit.verify import VerifyResult, read_trail, verify
from swiftdeploy.errors import AuditTamperedError
from swiftdeploy.manifest import LoadedManifest

REPORT_DIR = "reports"


@dataclass(frozen=True)
class AuditSettings:
    path: Path
    max_bytes: int
    secrets: tuple[str, ...]


@dataclass(frozen=True)
class Trail:
    records: list[Record]
    warnings: list[str]


@dataclass(frozen=True)
class ReportFiles:
    markdown: Path
    html: Path
    warnings: list[str]


def settings(loaded: LoadedManifest) -> AuditSettings:
    """Where the trail is (`audit.path`, relative to the manifest), its size, its secrets."""
    audit = loaded.manifest.audit
    return AuditSettings(
        path=loaded.project_dir / audit.path,
        max_bytes=audit.max_bytes,
        secrets=tuple(loaded.manifest.service.secret_values()),
    )


def open_audit_log(loaded: LoadedManifest, command: Sequence[str] | None = None) -> AuditLog:
    """The project's audit log, redacting the manifest's secret env values."""
    audit = settings(loaded)
    return AuditLog(audit.path, audit.max_bytes, audit.secrets, command=command)


def verify_trail(path: Path, anchor: str | None = None) -> VerifyResult:
    """Check the chain (and the anchor); the caller decides what a failure means."""
    return verify(path, anchor)


def load_trail(path: Path) -> Trail:
    """The verified records; raises AuditTamperedError when the chain is broken."""
    records, result = read_trail(path)
    if result.first_bad is not None:
        raise AuditTamperedError(
            result.summary(),
            hint="see `swiftdeploy audit verify`; a report from a broken chain would not be true",
        )
    warnings = []
    if result.torn_tail is not None:
        warnings.append(
            f"left out a torn record at the end ({result.torn_tail.describe()}); "
            "see `swiftdeploy audit verify`"
        )
    if not result.files:
        warnings.append(f"no audit trail at {path} yet")
    return Trail(records, warnings + list(result.warnings))


def write_report(path: Path, out_dir: Path | None, rollout_id: str | None = None) -> ReportFiles:
    trail = load_trail(path)
    target = out_dir if out_dir is not None else path.parent / REPORT_DIR
    markdown, html = audit_report.write_report(trail.records, target, rollout_id)
    return ReportFiles(markdown, html, trail.warnings)


def why(path: Path, rollout_id: str | None = None) -> tuple[list[str], list[str]]:
    """(lines saying why the rollout ended as it did, warnings)."""
    trail = load_trail(path)
    return audit_report.why(trail.records, rollout_id), trail.warnings


def export(path: Path, format: str) -> tuple[str, list[str]]:
    """(the records in `format`, warnings)."""
    trail = load_trail(path)
    return audit_report.export(trail.records, format), trail.warnings
