"""`swiftdeploy policy test | check | eval` as functions on init's policies: OPA's
tests and its strict check, and one question put to the embedded engine and to a
throwaway OPA server, which answer alike; bad input is one line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from bench.support.sim import init_manifest

from swiftdeploy.commands.policy import check, evaluate, run_tests
from swiftdeploy.errors import BadInputError
from swiftdeploy.hostfacts import HostFacts
from swiftdeploy.manifest import LoadedManifest
from swiftdeploy.policy.base import INFRASTRUCTURE
from swiftdeploy.rollout.inputs import infrastructure_input


@pytest.fixture
def project(tmp_path: Path) -> LoadedManifest:
    return init_manifest(tmp_path)


def host_input(project: LoadedManifest, path: Path, disk_free_gb: float) -> Path:
    host = HostFacts(disk_free_gb=disk_free_gb, load_per_core=0.2, mem_available_pct=70.0,
                     cpu_count=2, state_dir="/x")  # fmt: skip
    document = infrastructure_input("deploy", project.manifest.policy.thresholds, host)
    path.write_text(json.dumps(document))
    return path


def test_the_shipped_policies_pass_their_tests_and_the_check(project: LoadedManifest) -> None:
    passed, report = run_tests(project)
    assert passed, report
    assert "PASS" in report
    assert check(project) == []


def test_a_broken_policy_fails_both_with_its_file_and_line(project: LoadedManifest) -> None:
    broken = project.project_dir / "policies" / "canary.rego"
    broken.write_text(broken.read_text() + "\nthis is not rego\n")
    passed, _ = run_tests(project)
    assert not passed
    problems = check(project)
    assert problems
    assert all(p.startswith(f"{broken}:") for p in problems), problems


@pytest.mark.parametrize("engine", ["embedded", "opa"])
def test_both_engines_answer_one_question_alike(
    project: LoadedManifest, tmp_path: Path, engine: str
) -> None:
    full = evaluate(project, host_input(project, tmp_path / "full.json", 0.1), engine,
                    INFRASTRUCTURE)  # fmt: skip
    room = evaluate(project, host_input(project, tmp_path / "room.json", 80.0), engine,
                    INFRASTRUCTURE)  # fmt: skip
    assert (room.allow, full.allow) == (True, False)
    assert any("disk" in reason.message for reason in full.reasons), full.reasons


def test_bad_input_is_one_line(project: LoadedManifest, tmp_path: Path) -> None:
    given = tmp_path / "input.json"
    with pytest.raises(BadInputError, match="no such file"):
        evaluate(project, given, "embedded", INFRASTRUCTURE)
    given.write_text('{"action":\n  deploy}')
    with pytest.raises(BadInputError, match=r"input.json:2: not JSON"):
        evaluate(project, given, "embedded", INFRASTRUCTURE)
    given.write_text("[1, 2]")
    with pytest.raises(BadInputError, match="must be a JSON object"):
        evaluate(project, given, "embedded", INFRASTRUCTURE)
    with pytest.raises(BadInputError, match="unknown package 'canaries'"):
        evaluate(project, host_input(project, given, 80.0), "embedded", "canaries")
