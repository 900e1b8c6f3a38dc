"""`swiftdeploy audit ...`: the commands find the trail from the manifest, print, and
fail with the error classes the main handler maps to exit codes."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from swiftdeploy.cli import run
from swiftdeploy.cli.audit import audit_app
from swiftdeploy.commands import audit as audit_cmd
from swiftdeploy.errors import AuditTamperedError, ExitCode
from swiftdeploy.manifest import load_manifest
from tests.audit.conftest import ROLLED_BACK, write_synthetic_trail

MANIFEST = """\
apiVersion: swiftdeploy/v1
service:
  name: shop
  command: ["swiftdeploy-demo", "--port", "{port}"]
  version: v1
  env:
    API_TOKEN: {value: "tok-very-secret-123", secret: true}
    PLAIN: hello
audit:
  path: audit/history.jsonl
  max_bytes: 8192
"""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "swiftdeploy.yaml").write_text(MANIFEST)
    return tmp_path


def invoke(project: Path, *args: str) -> Result:
    return CliRunner().invoke(audit_app, [*args, "-f", str(project / "swiftdeploy.yaml")])


def run_like_main(project: Path, *args: str) -> int:
    """The real handler: errors become exit codes."""
    return run(["audit", *args, "-f", str(project / "swiftdeploy.yaml")])


def test_settings_come_from_the_manifest(project: Path) -> None:
    settings = audit_cmd.settings(load_manifest(project / "swiftdeploy.yaml"))
    assert settings.path == project / "audit" / "history.jsonl"
    assert settings.max_bytes == 8192
    assert settings.secrets == ("tok-very-secret-123",)


def test_the_projects_log_redacts_the_manifests_secrets(project: Path) -> None:
    log = audit_cmd.open_audit_log(load_manifest(project / "swiftdeploy.yaml"), ["swiftdeploy"])
    log.append("command", env={"API_TOKEN": "tok-very-secret-123"})
    data = (project / "audit" / "history.jsonl").read_bytes()
    assert b"tok-very-secret-123" not in data
    assert b'"API_TOKEN":"***"' in data


def test_verify_ok_and_as_json(project: Path) -> None:
    write_synthetic_trail(project / "audit" / "history.jsonl")
    result = invoke(project, "verify")
    assert result.exit_code == 0, result.output
    assert result.output.startswith("audit trail ok: 30 records in 1 file(s)")
    data = json.loads(invoke(project, "verify", "--json").output)
    assert data["ok"] is True
    assert data["records"] == 30
    anchored = invoke(project, "verify", "--anchor", data["head"])
    assert anchored.exit_code == 0
    assert "it is the head" in anchored.output


def test_verify_failure_names_the_record_and_exits_1(project: Path) -> None:
    path = project / "audit" / "history.jsonl"
    records = write_synthetic_trail(path)
    lines = path.read_text().splitlines()
    del lines[9]
    path.write_text("\n".join(lines) + "\n")

    result = invoke(project, "verify")
    assert isinstance(result.exception, AuditTamperedError)
    assert f"{path}:10 (record {records[10]['id']})" in result.stdout
    assert "1 record(s) before it are missing" in str(result.exception)
    assert run_like_main(project, "verify") == ExitCode.OPERATIONAL == 1
    data = json.loads(invoke(project, "verify", "--json").output)
    assert data["first_bad"]["line"] == 10
    assert data["ok"] is False


def test_report_why_export_refuse_a_broken_chain(project: Path) -> None:
    path = project / "audit" / "history.jsonl"
    write_synthetic_trail(path)
    path.write_text(path.read_text().replace('"i":', '"j":', 1).replace("v3", "v4", 1))
    for args in (("why",), ("report",), ("export", "--format", "json")):
        result = invoke(project, *args)
        assert isinstance(result.exception, AuditTamperedError), args


def test_why(project: Path) -> None:
    write_synthetic_trail(project / "audit" / "history.jsonl")
    result = invoke(project, "why")
    assert result.exit_code == 0, result.output
    assert f"rollout {ROLLED_BACK}" in result.output
    assert "\nrule errors_harm: e-value " in result.output
    assert "\nrule max_error_rate: e-value " in result.output
    assert ", alpha 0.01: canary error rate above 1.0% (thresholds.max_error_rate)" in result.output
    assert "\nstatistic: errors against stable: e = " in result.output
    assert run_like_main(project, "why", "r-unknown") == ExitCode.BAD_INPUT


def test_report_default_and_given_directory(project: Path) -> None:
    write_synthetic_trail(project / "audit" / "history.jsonl")
    result = invoke(project, "report")
    assert result.exit_code == 0, result.output
    assert (project / "audit" / "reports" / "audit_report.html").is_file()
    out = project / "elsewhere"
    result = invoke(project, "report", "--rollout", ROLLED_BACK, "--out", str(out))
    assert result.exit_code == 0, result.output
    assert f"wrote {out / 'audit_report.md'}" in result.output
    assert ROLLED_BACK in (out / "audit_report.md").read_text()


def test_export_formats(project: Path, tmp_path: Path) -> None:
    records = write_synthetic_trail(project / "audit" / "history.jsonl")
    as_json = invoke(project, "export", "--format", "json")
    assert json.loads(as_json.output) == records
    as_csv = invoke(project, "export", "--format", "csv")
    assert len(list(csv.DictReader(io.StringIO(as_csv.output)))) == len(records)
    target = tmp_path / "decisions.ndjson"
    result = invoke(project, "export", "--format", "opa-decision-log", "-o", str(target))
    assert result.exit_code == 0, result.output
    events = [json.loads(line) for line in target.read_text().splitlines()]
    assert len(events) == sum(r["kind"] == "decision" for r in records)
    bad = invoke(project, "export", "--format", "xml")
    assert bad.exit_code == 2  # click's usage error


def test_a_torn_tail_is_a_warning_for_readers_and_a_failure_for_verify(project: Path) -> None:
    path = project / "audit" / "history.jsonl"
    write_synthetic_trail(path)
    with path.open("ab") as handle:
        handle.write(b'{"id":"half a rec')
    assert run_like_main(project, "verify") == 1
    verify = invoke(project, "verify")
    assert "torn" in verify.output
    assert "truncate -s" in verify.output
    why = invoke(project, "why")
    assert why.exit_code == 0
    assert "rule max_error_rate" in why.stdout
    assert "left out a torn record" in why.stderr
    assert "left out a torn record" not in why.stdout


def test_missing_manifest_is_bad_input(tmp_path: Path) -> None:
    assert run_like_main(tmp_path, "verify") == ExitCode.BAD_INPUT
