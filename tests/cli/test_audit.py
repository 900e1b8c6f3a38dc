"""`swiftdeploy audit ...`: the commands find the trail from the manifest, print, and
fail with the error classes the main handler maps to exit codes."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from swiftdeploy.audit.head import head_path
from swiftdeploy.audit.log import AuditLog
from swiftdeploy.audit.looks import expand
from swiftdeploy.cli import run
from swiftdeploy.cli.audit import audit_app
from swiftdeploy.errors import AuditTamperedError, ExitCode
from tests.support.trails import ROLLED_BACK, write_synthetic_trail

pytestmark = pytest.mark.usefixtures("fresh_audit_keys")

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


def test_verify_ok_and_as_json(project: Path) -> None:
    write_synthetic_trail(project / "audit" / "history.jsonl")
    result = invoke(project, "verify")
    assert result.exit_code == 0, result.output
    assert result.output.startswith("audit trail ok: 26 records in 1 file(s)")
    data = json.loads(invoke(project, "verify", "--json").output)
    assert data["ok"] is True
    assert data["records"] == 26
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
    assert len(list(csv.DictReader(io.StringIO(as_csv.output)))) == len(expand(records))
    target = tmp_path / "decisions.ndjson"
    result = invoke(project, "export", "--format", "opa-decision-log", "-o", str(target))
    assert result.exit_code == 0, result.output
    events = [json.loads(line) for line in target.read_text().splitlines()]
    assert len(events) == sum(r["kind"] == "decision" for r in expand(records))
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


def test_verify_finds_records_cut_off_the_end(project: Path) -> None:
    path = project / "audit" / "history.jsonl"
    write_synthetic_trail(path)
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("".join(lines[:-2]))

    result = invoke(project, "verify")
    assert isinstance(result.exception, AuditTamperedError)
    assert "records were cut from the end of the audit trail" in result.stdout
    assert "ends at record 24, but its head file names record 26" in result.stdout
    assert "truncate -s" not in result.stdout
    data = json.loads(invoke(project, "verify", "--json").output)
    assert data["seal_problem"]["code"] == "cut"
    for args in (("why",), ("report",), ("export", "--format", "json")):
        assert isinstance(invoke(project, *args).exception, AuditTamperedError), args


def test_checkpoint_then_verify_against_it(project: Path, tmp_path: Path) -> None:
    path = project / "audit" / "history.jsonl"
    write_synthetic_trail(path)
    kept = tmp_path / "kept" / "checkpoint.json"
    kept.parent.mkdir()

    made = invoke(project, "checkpoint", "-o", str(kept))
    assert made.exit_code == 0, made.output
    checkpoint = json.loads(kept.read_text())
    assert (checkpoint["count"], checkpoint["trail"]) == (26, str(path.resolve()))
    assert checkpoint["public_key"] in made.stderr  # what to pin with --key
    on_stdout = invoke(project, "checkpoint")
    assert json.loads(on_stdout.stdout)["head"] == checkpoint["head"]

    AuditLog(path, 8192, []).append("command", note="after the checkpoint")
    checked = invoke(
        project, "verify", "--checkpoint", str(kept), "--key", checkpoint["public_key"]
    )
    assert checked.exit_code == 0, checked.output
    assert "1 records follow it" in checked.output
    assert json.loads(invoke(project, "verify", "--json", "--checkpoint", str(kept)).output)[
        "checkpoint_found"
    ]

    other_key = "ed25519:" + "A" * 43 + "="
    wrong = invoke(project, "verify", "--checkpoint", str(kept), "--key", other_key)
    assert isinstance(wrong.exception, AuditTamperedError)
    assert "the checkpoint cannot be trusted" in wrong.stdout
    assert run_like_main(project, "verify", "--key", other_key) == ExitCode.BAD_INPUT
    assert run_like_main(project, "verify", "--checkpoint", str(path)) == ExitCode.BAD_INPUT
    assert run_like_main(project, "verify", "--checkpoint", str(kept), "--key", "x") == 2


def test_checkpoint_refuses_a_trail_that_does_not_verify(project: Path) -> None:
    assert isinstance(invoke(project, "checkpoint").exception, Exception)  # no trail yet
    path = project / "audit" / "history.jsonl"
    write_synthetic_trail(path)
    head_path(path).unlink()
    result = invoke(project, "checkpoint")
    assert isinstance(result.exception, AuditTamperedError)
    assert result.stdout == ""


def test_adopt_seals_a_trail_written_before_head_files(project: Path) -> None:
    """A trail as swiftdeploy 0.2 wrote it: records without MACs, no head file."""
    path = project / "audit" / "history.jsonl"
    records = write_synthetic_trail(path)
    head_path(path).unlink()
    stripped = [{k: v for k, v in r.items() if k != "mac"} for r in records]
    path.write_text("".join(json.dumps(r, sort_keys=True, separators=(",", ":")) + "\n"
                            for r in stripped))  # fmt: skip
    before = invoke(project, "verify")
    assert isinstance(before.exception, AuditTamperedError)
    assert "the audit trail has no head file" in before.stdout
    assert "swiftdeploy audit adopt" in before.stdout

    adopted = invoke(project, "adopt")
    assert adopted.exit_code == 0, adopted.output
    assert f"adopted 26 records (head {records[-1]['hash']}); sealed by record 27" in adopted.output
    assert invoke(project, "verify").exit_code == 0
    written = json.loads(path.read_text().splitlines()[-1])
    assert (written["kind"], written["adopted_records"]) == ("adopt", 26)
    again = invoke(project, "adopt")
    assert again.exit_code == 0
    assert "nothing to adopt" in again.output


def test_adopt_refuses_a_trail_with_other_problems(project: Path) -> None:
    path = project / "audit" / "history.jsonl"
    write_synthetic_trail(path)
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("".join(lines[:5] + lines[6:]))
    result = invoke(project, "adopt")
    assert isinstance(result.exception, AuditTamperedError)
    assert "missing head file" in str(result.exception.hint)


def test_verify_prints_text_from_the_trail_without_control_characters(project: Path) -> None:
    # Given a trail whose record id was rewritten to clear the screen
    path = project / "audit" / "history.jsonl"
    records = write_synthetic_trail(path)
    lines = path.read_text().splitlines()
    lines[3] = lines[3].replace(records[3]["id"], "\\u001b[2Jforged", 1)
    path.write_text("\n".join(lines) + "\n")
    # When it is verified
    result = invoke(project, "verify")
    # Then the id is shown escaped, and no escape character reaches the terminal
    assert "\\x1b[2Jforged" in result.stdout
    assert "\x1b" not in result.stdout
