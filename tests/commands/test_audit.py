"""The audit commands as functions over a project's trail: where the manifest puts it,
its secrets redacted, and what a report reads (verified records, with warnings)."""

from __future__ import annotations

from pathlib import Path

import pytest
from bench.support.sim import init_manifest

from swiftdeploy.commands import audit as audit_cmd
from swiftdeploy.errors import AuditTamperedError, BadInputError
from swiftdeploy.manifest import LoadedManifest
from tests.support.trails import ROLLED_BACK, write_synthetic_trail

pytestmark = pytest.mark.usefixtures("fresh_audit_keys")

SECRET = "tok-very-secret-123"  # made up: the trail must not hold it


@pytest.fixture
def project(tmp_path: Path) -> LoadedManifest:
    """init's manifest with a secret and a plain env value, its trail in audit/."""
    env = {"API_TOKEN": {"value": SECRET, "secret": True}, "PLAIN": "hello"}
    return init_manifest(
        tmp_path,
        **{"service.env": env, "audit.path": "audit/history.jsonl", "audit.max_bytes": 8192},
    )


def test_settings_come_from_the_manifest(project: LoadedManifest) -> None:
    settings = audit_cmd.settings(project)
    assert settings.path == project.project_dir / "audit" / "history.jsonl"
    assert settings.max_bytes == 8192
    assert settings.secrets == (SECRET,)
    assert audit_cmd.trail_of(project) == settings.path  # one host: the file itself


def test_the_projects_log_redacts_the_manifests_secrets(project: LoadedManifest) -> None:
    log = audit_cmd.open_audit_log(project, ["swiftdeploy"])
    log.append("command", env={"API_TOKEN": SECRET})
    data = (project.project_dir / "audit" / "history.jsonl").read_bytes()
    assert SECRET.encode() not in data
    assert b'"API_TOKEN":"***"' in data


def test_a_trail_not_written_yet_reads_as_no_records_and_says_so(
    project: LoadedManifest,
) -> None:
    trail = audit_cmd.load_trail(audit_cmd.trail_of(project))
    assert trail.records == []
    assert trail.warnings == [f"no audit trail at {audit_cmd.settings(project).path} yet"]


def test_a_report_reads_only_a_trail_that_verifies(project: LoadedManifest) -> None:
    path = audit_cmd.settings(project).path
    written = write_synthetic_trail(path)
    trail = audit_cmd.load_trail(path)
    assert [r["seq"] for r in trail.records] == [r["seq"] for r in written]
    lines, _ = audit_cmd.why(path, ROLLED_BACK)
    assert any("rolled back" in line for line in lines)
    # one record's reason changed by hand: every reader refuses the trail
    path.write_text(path.read_text().replace('"rolled back"', '"promoted"', 1))
    with pytest.raises(AuditTamperedError):
        audit_cmd.load_trail(path)
    with pytest.raises(AuditTamperedError):
        audit_cmd.export(path, "json")


def test_a_signer_needs_a_checkpoint_to_compare_with(project: LoadedManifest) -> None:
    path = audit_cmd.settings(project).path
    write_synthetic_trail(path)
    with pytest.raises(BadInputError, match="pass --checkpoint"):
        audit_cmd.verify_trail(path, signer="ed25519:AAAA")
    assert audit_cmd.verify_trail(path).ok
