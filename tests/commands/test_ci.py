"""`swiftdeploy ci github` (commands/ci.py), the entrypoint of the repository's GitHub
Action: a real rollout of a local project, its outputs read from a $GITHUB_OUTPUT file
and its job summary from a $GITHUB_STEP_SUMMARY file, as the runner would; and
action.yml held to the entrypoint, so the two cannot drift apart."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from bench.support.project import (
    SWIFTDEPLOY,
    Project,
    fast_rollout,
    new_project,
    teardown,
    tune,
)

from swiftdeploy.commands import ci
from swiftdeploy.errors import BadInputError
from tests.conftest import canary_ready, finish_outputs, wait_for

ACTION = Path(__file__).resolve().parents[2] / "action.yml"


@dataclass
class Step:
    """What the runner sees of one run of the entrypoint."""

    code: int
    stdout: str
    stderr: str
    outputs: dict[str, str]
    summary: str


def read_outputs(text: str) -> dict[str, str]:
    """$GITHUB_OUTPUT as the runner reads it: `name=value` lines and `name<<DELIMITER`
    blocks (docs.github.com, "Multiline strings")."""
    values: dict[str, str] = {}
    lines = iter(text.split("\n"))
    for line in lines:
        if "<<" in line:
            name, delimiter = line.split("<<", 1)
            body: list[str] = []
            for inner in lines:
                if inner == delimiter:
                    break
                body.append(inner)
            else:
                raise AssertionError(f"{name}: no closing {delimiter}")
            values[name] = "\n".join(body)
        elif "=" in line:
            name, value = line.split("=", 1)
            values[name] = value
    return values


def github_env(files: Path) -> dict[str, str]:
    output, summary = files / "output", files / "summary"
    summary.write_text("an earlier step's summary\n")
    output.write_text("")
    return os.environ | {"GITHUB_OUTPUT": str(output), "GITHUB_STEP_SUMMARY": str(summary)}


def start_entrypoint(project: Project, files: Path, version: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [SWIFTDEPLOY, "ci", "github", version, "-f", str(project.manifest),
         "--out", str(files / "ci")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=project.root,
        env=github_env(files),
    )  # fmt: skip


def step_of(process: subprocess.Popen[str], files: Path) -> Step:
    stdout, stderr = finish_outputs(process, timeout=240)
    outputs = read_outputs((files / "output").read_text())
    summary = (files / "summary").read_text()
    assert summary.startswith("an earlier step's summary\n")  # appended, as steps do
    return Step(process.returncode, stdout, stderr, outputs, summary)


def audit_why(project: Project, rollout_id: str) -> list[str]:
    return project.cli("audit", "why", rollout_id).stdout.splitlines()


@pytest.fixture(scope="module")
def ci_project() -> Iterator[Project]:
    """v1 deployed, with one short step under the rollout's own load (the rollouts of
    this module follow each other on it)."""
    root = Path(tempfile.mkdtemp(prefix="sd-", dir="/tmp"))
    project = new_project(root)
    fast_rollout(project, steps=[{"weight": 50}])
    try:
        project.cli("deploy")
        yield project
    finally:
        teardown(project)
        shutil.rmtree(root, ignore_errors=True)


# --- a real rollout, as the Action runs it -----------------------------------------------


@pytest.mark.e2e
def test_a_promotion_sets_the_outputs_and_the_summary(ci_project: Project, tmp_path: Path) -> None:
    # Given a deployed project, and the runner's files
    project = ci_project
    # When the entrypoint rolls v2 out
    step = step_of(start_entrypoint(project, tmp_path, "v2"), tmp_path)
    # Then it exits as the rollout did, and sets every documented output
    assert step.code == 0, step.stderr
    rollout_id = project.state()["rollout_id"]
    assert list(step.outputs) == list(ci.OUTPUT_NAMES)
    out = step.outputs
    assert (out["outcome"], out["exit-code"], out["version"]) == ("promoted", "0", "v2")
    assert out["rollout-id"] == rollout_id
    assert out["message"] == "promoted: v2 is stable"
    # `why` is the `audit why` lines, whole (a multi-line value)
    why = audit_why(project, rollout_id)
    assert len(why) > 1
    assert out["why"].split("\n") == why
    # the report is the rollout's HTML report, the events its events
    report = Path(out["report"])
    assert report == tmp_path / "ci" / "audit_report.html"
    assert rollout_id in report.read_text()
    events = [json.loads(line) for line in Path(out["events"]).read_text().splitlines()]
    assert {e["subject"] for e in events} == {rollout_id}
    assert "dev.swiftdeploy.rollout.promoted.v1" in [e["type"] for e in events]
    # The job summary says the same in Markdown
    assert "### SwiftDeploy: rollout of `v2` promoted" in step.summary
    assert f"| promoted | 0 | `v2` | `{rollout_id}` |" in step.summary
    assert "```text\n" + "\n".join(why) + "\n```" in step.summary
    assert f"- Report: `{report}`" in step.summary
    assert f"- Events: `{out['events']}`" in step.summary
    # The log has the rollout's lines, each event as one readable line in the trail's
    # order before the outcome (streamed as recorded), then the outcome, the recorded
    # text inside a block where workflow commands are off
    assert "promoted" in step.stderr
    assert "outcome: promoted (exit code 0)" in step.stdout
    token = re.search(r"^::stop-commands::(\w+)$", step.stdout, re.M)
    assert token is not None
    assert step.stdout.index("outcome:") < step.stdout.index(f"::{token[1]}::")
    said = [line for line in step.stdout.splitlines() if line.startswith("event ")]
    assert said == [ci.event_line(event) for event in events], said
    assert "rollout.promoted: v2 promoted" in said[-2] + said[-1]
    assert step.stdout.index(token[0]) < step.stdout.index(said[0])
    assert step.stdout.index(said[-1]) < step.stdout.index("outcome:")
    assert "::group::" not in step.stdout


@pytest.mark.e2e
def test_a_rollback_exits_3_and_says_why(ci_project: Project, tmp_path: Path) -> None:
    # Given a deployed project whose step lasts long enough for the chaos to land in it
    # however busy the machine (harm rolls back at once; only a pass waits for 30 s)
    project = ci_project
    tune(project, min_duration="30s", max_duration="120s")
    # When v3 rolls out and its canary fails half its requests
    process = start_entrypoint(project, tmp_path, "v3")
    try:
        wait_for(lambda: canary_ready(project), timeout=90, what="the canary")
        project.cli("chaos", "--error-rate", "0.5")
    finally:
        step = step_of(process, tmp_path)
    # Then it exits 3, the rollout's code for a rollback, with the outputs saying why
    assert step.code == 3, step.stderr
    out = step.outputs
    assert (out["outcome"], out["exit-code"], out["version"]) == ("rolled-back", "3", "v3")
    assert out["message"].startswith("rolled back: ")
    rollout_id = out["rollout-id"]
    assert rollout_id == project.state()["rollout_id"]
    assert out["why"].split("\n") == audit_why(project, rollout_id)
    assert "error" in out["why"]
    assert Path(out["report"]).is_file()
    assert "### SwiftDeploy: rollout of `v3` rolled-back" in step.summary
    assert f"| rolled-back | 3 | `v3` | `{rollout_id}` |" in step.summary
    kinds = [json.loads(line)["type"] for line in Path(out["events"]).read_text().splitlines()]
    assert "dev.swiftdeploy.rollout.rolled-back.v1" in kinds


def test_a_rollout_that_cannot_start_still_writes_its_outputs(
    project: Project, tmp_path: Path
) -> None:
    # Given a project where nothing is deployed yet
    step = step_of(start_entrypoint(project, tmp_path, "v2"), tmp_path)
    # Then the step fails as the rollout command did, the outputs and summary say so
    assert step.code == 1, step.stderr
    out = step.outputs
    assert (out["outcome"], out["exit-code"], out["rollout-id"]) == ("failed", "1", "")
    assert out["message"] in step.stderr  # the rollout command's error line
    assert (out["why"], out["report"]) == ("", "")
    assert "| failed | 1 | `v2` | none (it did not start) |" in step.summary


def test_outside_github_it_is_refused_before_anything_runs(project: Project) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GITHUB_", "RUNNER_"))}
    done = subprocess.run(
        [SWIFTDEPLOY, "ci", "github", "v2", "-f", str(project.manifest)],
        capture_output=True, text=True, env=env, cwd=project.root, check=False,
    )  # fmt: skip
    assert done.returncode == 2
    assert done.stderr.startswith("swiftdeploy: error: GITHUB_OUTPUT and GITHUB_STEP_SUMMARY not")
    assert len(done.stderr.splitlines()) == 1
    assert done.stdout == ""


# --- the pieces -------------------------------------------------------------------------


def test_outputs_survive_newlines_and_lookalike_delimiters() -> None:
    values = {
        "why": "line one\nEOF\nname<<EOF\nline four",
        "outcome": "promoted",
        "empty": "",
    }
    assert read_outputs(ci.output_text(values)) == values


@pytest.mark.parametrize(
    ("args", "said"),
    [
        ("--detach", "--detach does not go with `ci github`, which follows the rollout"),
        ("--json", "--json is set by `ci github` itself"),
        ("-f other.yaml", "-f: the manifest is the action's own input"),
        ("--events-file=x", "--events-file is set by `ci github` itself"),
    ],
)
def test_rollout_args_that_ci_sets_itself_are_refused(args: str, said: str) -> None:
    with pytest.raises(BadInputError) as caught:
        ci.rollout_args(args)
    assert said in caught.value.one_line()
    if args != "-f other.yaml":
        assert "manifest" not in caught.value.one_line()


def test_refused_arguments_still_write_the_outputs_and_the_summary(
    project: Project, tmp_path: Path
) -> None:
    # When the step is given rollout arguments it cannot take
    process = subprocess.Popen(
        [SWIFTDEPLOY, "ci", "github", "v2", "-f", str(project.manifest),
         "--out", str(tmp_path / "ci"), "--rollout-args", "--detach"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=project.root,
        env=github_env(tmp_path),
    )  # fmt: skip
    step = step_of(process, tmp_path)
    # Then it exits 2 (bad input) in one line, and the outputs and summary say so
    assert step.code == 2, step.stderr
    assert len(step.stderr.splitlines()) == 1, step.stderr
    assert step.stderr.startswith("swiftdeploy: error: rollout arguments: --detach does not go")
    out = step.outputs
    assert list(out) == list(ci.OUTPUT_NAMES)
    assert (out["outcome"], out["exit-code"], out["version"]) == ("failed", "2", "v2")
    assert out["message"] in step.stderr
    assert (out["rollout-id"], out["why"], out["report"], out["events"]) == ("", "", "", "")
    assert "### SwiftDeploy: rollout of `v2` failed" in step.summary
    assert "| failed | 2 | `v2` | none (it did not start) |" in step.summary
    assert out["message"] in step.summary


def test_an_event_is_one_readable_line() -> None:
    event = {"type": "dev.swiftdeploy.hook.pre-rollout.v1", "time": "2026-12-07T19:47:50.372Z",
             "data": {"rollout_id": "r", "hook": "smoke", "result": "refused", "status": 500,
                      "error": None}}  # fmt: skip
    assert ci.event_line(event) == "event 19:47:50 hook.pre-rollout: smoke refused (HTTP 500)"
    step = {
        "type": "dev.swiftdeploy.rollout.aborted.v1",
        "time": "2026-12-07T19:47:51.000Z",
        "data": {"reason": "aborted by eve:\n::set-output name=x::y", "by": "eve"},
    }
    assert ci.event_line(step) == (
        "event 19:47:51 rollout.aborted: aborted by eve:?::set-output name=x::y"
    )


def test_rollout_args_are_split_as_a_shell_would() -> None:
    assert ci.rollout_args("--verbose  --quiet") == ("--verbose", "--quiet")
    with pytest.raises(BadInputError, match="No closing quotation"):
        ci.rollout_args("--reason 'unclosed")


def test_recorded_text_in_the_summary_stays_text(tmp_path: Path) -> None:
    result = ci.CiResult(
        version="v2", exit_code=3, outcome="rolled-back",
        message="rolled back: aborted by eve: ```\n# owned", rollout_id="abc123",
        events=tmp_path / "e`x", report=None, why=["aborted by eve: ``` <b>hi</b>"],
        warnings=[],
    )  # fmt: skip
    summary = ci.summary_markdown(result)
    # the fences are longer than any backtick run they hold, so nothing closes them early
    assert "````text\nrolled back: aborted by eve: ```\n# owned\n````" in summary
    assert "````text\naborted by eve: ``` <b>hi</b>\n````" in summary
    assert f"- Events: `` {tmp_path / 'e`x'} ``" in summary


# --- action.yml ----------------------------------------------------------------------------


def action() -> dict[str, Any]:
    loaded = yaml.safe_load(ACTION.read_text())
    assert isinstance(loaded, dict)
    return loaded


def runs_text(steps: list[dict[str, Any]]) -> str:
    return yaml.safe_dump(steps)


def test_action_is_a_composite_running_the_entrypoint() -> None:
    found = action()
    assert found["runs"]["using"] == "composite"
    steps = found["runs"]["steps"]
    [entry] = [s for s in steps if "swiftdeploy ci github" in s.get("run", "")]
    # its outputs are the entrypoint's, each read from that step
    assert list(found["outputs"]) == list(ci.OUTPUT_NAMES)
    for name, output in found["outputs"].items():
        assert output["value"] == f"${{{{ steps.{entry['id']}.outputs.{name} }}}}"
        assert output["description"]
    # every input is documented and used, and no step uses an undeclared one
    inputs = found["inputs"]
    assert inputs["version"]["required"] is True
    assert inputs["manifest"]["default"] == "swiftdeploy.yaml"
    for name in ("working-directory", "python-version", "install", "rollout-args"):
        assert name in inputs
    used = set(re.findall(r"inputs\.([\w-]+)", runs_text(steps)))
    assert used == set(inputs), "inputs declared and inputs used differ"
    assert all(spec["description"] for spec in inputs.values())


def test_action_steps_take_inputs_through_the_environment() -> None:
    # an expression inside a script is pasted into it before the shell reads it: a
    # version or argument holding `"; curl ... #` would run (GitHub's script injection)
    for step in action()["runs"]["steps"]:
        assert "${{" not in step.get("run", ""), step
        if "run" in step:
            assert step["shell"] == "bash"


def test_readme_shows_the_action_as_it_is() -> None:
    # The README's example workflow parses, passes only inputs the action declares and
    # reads only outputs it sets; its tables list exactly the inputs and outputs
    readme = (ACTION.parent / "README.md").read_text()
    section = readme[readme.index("## In CI") :]
    section = section[: section.index("\n## ")]
    [example] = re.findall(r"```yaml\n(# \.github/workflows/.*?)```", section, re.S)
    workflow = yaml.safe_load(example)
    [step] = [s for s in workflow["jobs"]["rollout"]["steps"] if s.get("id") == "rollout"]
    assert step["uses"].endswith("/swiftdeploy@v1")
    found = action()
    assert set(step["with"]) <= set(found["inputs"])
    assert set(re.findall(r"steps\.rollout\.outputs\.([\w-]+)", example)) <= set(found["outputs"])
    rows = set(re.findall(r"^\| `([\w-]+)`", section, re.M))
    shown = {
        name for pair in re.findall(r"^\| `([\w-]+)`, `([\w-]+)`", section, re.M) for name in pair
    }
    assert rows | shown == set(found["inputs"]) | set(found["outputs"])
