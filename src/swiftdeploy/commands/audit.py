"""`swiftdeploy audit ...`: verify, checkpoint, adopt, report, why and export over a
project's audit trail.

Plain functions over a trail: a path, or on Kubernetes the cluster's chain copied here
(`trail_of`, `swiftdeploy.commands.cluster_trail`); the flag wiring is in
`swiftdeploy.cli.audit`. A report, `why` or an export reads only a trail that verifies
(its chain, MACs and head file, or there the signed head): a torn tail (an interrupted
append) is left out with a warning, anything else is refused.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from swiftdeploy.audit import checkpoint as checkpoints
from swiftdeploy.audit.checkpoint import Checkpoint
from swiftdeploy.audit.keys import KeyStore
from swiftdeploy.audit.log import Record, utc_timestamp
from swiftdeploy.audit.verify import VerifyResult, read_trail, verify
from swiftdeploy.commands import cluster_trail
from swiftdeploy.commands.cluster_trail import Synced
from swiftdeploy.commands.context import audit_settings as settings
from swiftdeploy.commands.context import open_audit_log
from swiftdeploy.errors import AuditError, AuditTamperedError, BadInputError
from swiftdeploy.manifest import LoadedManifest
from swiftdeploy.review import report as audit_report

__all__ = ["open_audit_log", "settings"]  # where other commands find the trail

REPORT_DIR = "reports"
# A trail on one host is its path; on Kubernetes, the cluster's copied here.
Source = Path | Synced


def trail_of(loaded: LoadedManifest) -> Source:
    """The project's trail: on Kubernetes, the cluster's, copied here first."""
    if cluster_trail.is_cluster(loaded):
        return cluster_trail.sync(loaded)
    return settings(loaded).path


def _path(source: Source) -> Path:
    return source.path if isinstance(source, Synced) else source


@dataclass(frozen=True)
class Trail:
    records: list[Record]
    warnings: list[str]


@dataclass(frozen=True)
class ReportFiles:
    markdown: Path
    html: Path
    warnings: list[str]


def verify_trail(
    path: Source,
    anchor: str | None = None,
    checkpoint_file: Path | None = None,
    signer: str | None = None,
) -> VerifyResult:
    """Check the trail (and the anchor and checkpoint); the caller decides what a failure
    means. `signer` is the public key the checkpoint must carry."""
    if signer is not None and checkpoint_file is None:
        raise BadInputError("--key names who must have signed a checkpoint: pass --checkpoint")
    checkpoint = checkpoints.load(checkpoint_file) if checkpoint_file else None
    expected = checkpoints.parse_public_key(signer) if signer is not None else None
    if isinstance(path, Synced):
        return cluster_trail.verify_synced(path, anchor, checkpoint, expected)
    return verify(path, anchor, checkpoint=checkpoint, signer=expected)


def make_checkpoint(path: Source) -> Checkpoint:
    """Sign the head of a trail that verifies, with this user's signing key."""
    result = cluster_trail.verify_synced(path) if isinstance(path, Synced) else verify(path)
    if not result.ok:
        raise AuditTamperedError(
            result.summary(),
            hint="a checkpoint vouches for the trail as it is: see `swiftdeploy audit verify`",
        )
    if result.head is None:
        raise AuditError(f"the audit trail {path} holds no records yet: nothing to checkpoint")
    keys = KeyStore.from_environment()
    return checkpoints.create(
        keys, _path(path).resolve(), result.records, result.head, utc_timestamp()
    )


def adopt(loaded: LoadedManifest) -> Record | None:
    """Seal a trail whose one problem is a missing head file (one written before
    swiftdeploy kept it); None when there is nothing to adopt."""
    audit = settings(loaded)
    result = verify(audit.path)
    if result.ok:
        return None
    missing_head = result.seal_problem is not None and result.seal_problem.code == "head_missing"
    if not missing_head or len(result.problems) > 1 or result.head is None:
        raise AuditTamperedError(
            result.summary(),
            hint="adopt seals only a trail whose one problem is a missing head file",
        )
    return open_audit_log(loaded).adopt(result.records, result.head)


def load_trail(path: Source) -> Trail:
    """The verified records; raises AuditTamperedError when anything but a torn tail is
    wrong (the chain, a MAC, the head file, the key)."""
    if isinstance(path, Synced):
        records, result = cluster_trail.read_synced(path)
    else:
        records, result = read_trail(path)
    if result.tampered:
        raise AuditTamperedError(
            result.summary(),
            hint="see `swiftdeploy audit verify`; a report from a broken trail would not be true",
        )
    warnings = []
    if result.torn_tail is not None:
        warnings.append(
            f"left out a torn record at the end ({result.torn_tail.describe()}); "
            "see `swiftdeploy audit verify`"
        )
    if not result.files:
        warnings.append(f"no audit trail at {_path(path)} yet")
    return Trail(records, warnings + list(result.warnings))


def write_report(path: Source, out_dir: Path | None, rollout_id: str | None = None) -> ReportFiles:
    trail = load_trail(path)
    target = out_dir if out_dir is not None else _path(path).parent / REPORT_DIR
    markdown, html = audit_report.write_report(trail.records, target, rollout_id)
    return ReportFiles(markdown, html, trail.warnings)


def why(path: Source, rollout_id: str | None = None) -> tuple[list[str], list[str]]:
    """(lines saying why the rollout ended as it did, warnings)."""
    trail = load_trail(path)
    return audit_report.why(trail.records, rollout_id), trail.warnings


def export(path: Source, format: str) -> tuple[str, list[str]]:
    """(the records in `format`, warnings)."""
    trail = load_trail(path)
    return audit_report.export(trail.records, format), trail.warnings
