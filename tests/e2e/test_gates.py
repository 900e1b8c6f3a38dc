"""Policy gates from the CLI: the seed's scenario A, and OPA lost in the middle of a canary."""

from __future__ import annotations

import json
import shutil

import pytest
import yaml

from swiftdeploy.runtime.local import SupervisorRuntime
from tests.conftest import Project, canary_ready, fast_rollout, finish, start_rollout, wait_for

pytestmark = pytest.mark.e2e


@pytest.mark.parametrize("engine", ["embedded", "opa"])
def test_scenario_a_disk_threshold_above_free_disk_blocks_the_deploy(
    project: Project, engine: str
) -> None:
    # Given a disk threshold far above the free disk
    free_gb = shutil.disk_usage(project.root).free / 1e9
    manifest = yaml.safe_load(project.manifest.read_text())
    manifest["policy"]["engine"] = engine
    manifest["policy"]["thresholds"]["min_disk_free_gb"] = round(free_gb * 10)
    project.manifest.write_text(yaml.safe_dump(manifest))
    # When v1 is deployed
    done = project.cli("deploy", check=False)
    # Then the deploy is denied by policy (exit 3) with the rule's observed value and
    # threshold, in one line, and no replica was started
    assert done.returncode == 3, done.stdout + done.stderr
    lines = [ln for ln in done.stderr.splitlines() if ln.startswith("swiftdeploy: error:")]
    assert len(lines) == 1, done.stderr
    assert "Traceback" not in done.stderr
    assert "infrastructure policy denied deploy" in lines[0]
    assert "disk" in lines[0]
    assert f"{round(free_gb * 10)}" in lines[0]
    processes = {p.name for p in SupervisorRuntime(project.state_dir).processes()}
    assert not any(name.startswith(("stable-", "canary-")) for name in processes)
    assert project.state()["replicas"] == []


def test_opa_stopped_mid_canary_denies_and_promotes_nothing(project: Project) -> None:
    # Given a rollout gated by a real OPA server, with a short step limit
    fast_rollout(project)
    manifest = yaml.safe_load(project.manifest.read_text())
    manifest["strategy"]["canary"]["analysis"]["max_duration"] = "8s"
    project.manifest.write_text(yaml.safe_dump(manifest))
    project.cli("deploy")
    rollout = start_rollout(project, "v2")
    wait_for(lambda: canary_ready(project), what="the canary")
    # When OPA stops in the middle of the canary
    SupervisorRuntime(project.state_dir).stop("opa")
    output = finish(rollout)
    # Then the gates deny with "policy engine unreachable", nothing is promoted, and at
    # the step's limit on_timeout rolls back
    assert rollout.returncode == 3, output
    assert "policy engine unreachable" in output
    state = project.state()
    assert state["phase"] == "rolled-back"
    assert state["stable_version"] == "v1"
    history = (project.state_dir / "history.jsonl").read_text().splitlines()
    decisions = [json.loads(r) for r in history if '"kind":"decision"' in r]
    after_stop = [d for d in decisions if not d["decision"]["output"]["allow"]]
    assert after_stop
    assert all(d["action"] != "promote" for d in after_stop)
