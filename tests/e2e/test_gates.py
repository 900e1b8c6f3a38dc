"""Policy gates from the CLI: the seed's scenario A (OPA lost mid-rollout is in tests/faults)."""

from __future__ import annotations

import shutil

import pytest
import yaml

from swiftdeploy.runtime.local import SupervisorRuntime
from tests.conftest import Project

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
