"""Progressive rollouts end to end: real nginx, demo service replicas and a real OPA
server; each test asserts the final phase, the exit code and the traffic served."""

from __future__ import annotations

import json

import pytest
import yaml
from bench.support.project import Project, fast_rollout

from swiftdeploy.state.control import requester
from tests.conftest import (
    canary_ready,
    canary_served,
    finish,
    rollout_with_fault,
    start_rollout,
    version_counts,
    wait_for,
)

pytestmark = pytest.mark.e2e


# A healthy canary promoted and a canary failing 10% rolled back, with their trail:
# tests/e2e/test_audit_real_run.py (one run for both).


@pytest.mark.parametrize(
    ("fault", "reason"),
    [(["--latency-ms", "300"], "slower than stable")],
    ids=["300ms-latency"],
)
def test_a_bad_canary_is_rolled_back(
    rollout_project: Project, fault: list[str], reason: str
) -> None:
    # Given a rollout of v2 in progress
    project = rollout_project
    # When the canary degrades
    code, output = rollout_with_fault(project, "v2", *fault)
    # Then the rollout rolls it back by policy: exit 3, canary at 0%, replicas gone
    assert code == 3, output
    assert "rolled back" in output
    assert reason in output.lower()
    state = project.state()
    assert state["phase"] == "rolled-back"
    assert state["canary_weight"] == 0
    assert [r["track"] for r in state["replicas"]] == ["stable", "stable"]
    routes = project.admin_get("/routes").json()["routes"]
    assert routes["weights"]["canary"] == 0
    assert canary_served(project) > 0  # the canary really took traffic before
    assert version_counts(project.url + "/", 30) == {"v1": 30}


def test_a_manual_pause_waits_for_promote(project: Project) -> None:
    # Given a rollout whose first step pauses for a person
    fast_rollout(project, [{"weight": 20, "pause": "manual"}, {"weight": 50}])
    project.cli("deploy")
    # When it is rolled out
    first = project.cli("rollout", "v2", check=False, timeout=240)
    # Then it stops at step 1, paused, with the canary still taking 20%
    assert first.returncode == 0, first.stdout + first.stderr
    assert "paused at step 1" in first.stdout
    state = project.state()
    assert (state["phase"], state["pause_kind"], state["canary_weight"]) == ("paused", "manual", 20)
    counts = version_counts(project.url + "/", 100)
    assert counts == {"v1": 80, "v2": 20}
    # And `promote` has its driver go on to step 2, with analysis to the end
    second = project.cli("promote", check=False, timeout=240)
    assert second.returncode == 0, second.stdout + second.stderr
    assert "promoted by" in second.stdout
    wait_for(lambda: project.state()["phase"] == "promoted", timeout=240, what="promoted")
    assert version_counts(project.url + "/", 20) == {"v2": 20}


def test_abort_stops_a_running_rollout_and_rolls_back(rollout_project: Project) -> None:
    # Given a rollout in its first step (a long one)
    project = rollout_project
    tune = yaml.safe_load(project.manifest.read_text())
    tune["strategy"]["canary"]["analysis"]["min_duration"] = "60s"
    tune["strategy"]["canary"]["analysis"]["max_duration"] = "120s"
    project.manifest.write_text(yaml.safe_dump(tune))
    rollout = start_rollout(project, "v2")
    try:
        wait_for(lambda: canary_ready(project), what="the canary")
        # When it is aborted from another shell
        done = project.cli("abort", check=False, timeout=120)
    finally:
        output = finish(rollout, timeout=60)
    # Then its driver rolls the canary back as the person's abort, and the CLI that
    # follows the rollout says it was rolled back (exit 3)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"aborted by {requester()}: the canary is at 0% and stopped" in done.stdout
    assert rollout.returncode == 3, output
    assert f"rolled back: aborted by {requester()}" in output
    state = project.state()
    assert (state["phase"], state["canary_weight"]) == ("rolled-back", 0)
    assert version_counts(project.url + "/", 20) == {"v1": 20}


def test_rollout_json_is_a_summary_with_a_schema_version(rollout_project: Project) -> None:
    # Given v1 deployed, When v2 rolls out for a CI system
    done = rollout_project.cli("rollout", "v2", "--json", check=False, timeout=240)
    # Then stdout is one JSON object (the looks are in the trail, the state changes in
    # `--events`): the outcome with a schema version, numbers as numbers, and the exit
    # code the command returned
    assert done.returncode == 0, done.stderr
    [summary] = [json.loads(line) for line in done.stdout.splitlines()]
    assert (summary["schema_version"], summary["look"]) == (1, "summary")
    assert (summary["phase"], summary["exit_code"]) == ("promoted", 0)
    assert summary["stable_version"] == "v2"
    assert summary["canary_weight"] == 0
    assert summary["rollout_id"] == rollout_project.state()["rollout_id"]
