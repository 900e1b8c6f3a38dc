"""The whole lifecycle through the CLI: deploy, canary, promote, replace, teardown."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest
from bench.support.project import Project

from swiftdeploy.loadgen import LoadRun
from swiftdeploy.proc import pid_alive
from tests.conftest import version_counts

pytestmark = pytest.mark.e2e


def _pids(project: Project) -> list[int]:
    info = json.loads(project.cli("status", "--json", "--window", "0").stdout)
    return [r["pid"] for r in info["replicas"]]


def test_promote_all_makes_the_canary_stable_without_failed_requests(project: Project) -> None:
    # Given v1 deployed and a v2 canary at the first step, under keepalive load
    project.cli("deploy")
    project.cli("canary", "v2")
    assert project.state()["canary_weight"] == 10
    load = LoadRun(project.url + "/", seconds=12, connections=16, rate_per_connection=10)
    try:
        time.sleep(1)
        # When it is promoted through every step
        project.cli("promote")
        assert project.state()["canary_weight"] == 25
        project.cli("promote", "--all")
        result = load.wait()
    finally:
        load.stop()
    # Then v2 is stable on 2 replicas, the canary is gone, and no request failed
    state = project.state()
    assert state["phase"] == "promoted"
    assert state["stable_version"] == "v2"
    assert state["canary_version"] is None
    assert sorted((r["track"], r["version"]) for r in state["replicas"]) == [
        ("stable", "v2"),
        ("stable", "v2"),
    ]
    assert version_counts(project.url + "/", 50) == {"v2": 50}
    assert result.failed == 0, result


def test_deploy_replaces_stable_version_rolling(project: Project) -> None:
    project.cli("deploy")
    old = _pids(project)
    project.cli("deploy", "v1.1")
    assert version_counts(project.url + "/", 20) == {"v1.1": 20}
    assert not any(pid_alive(p) for p in old)


def test_teardown_leaves_no_process_alive(project: Project) -> None:
    # Given a deploy with a canary
    project.cli("deploy")
    project.cli("canary", "v2")
    pids = _pids(project)
    manager = int((project.state_dir / "supervisord.pid").read_text())
    nginx_master = int((project.state_dir / "nginx" / "nginx.pid").read_text())
    assert all(pid_alive(p) for p in [*pids, manager, nginx_master])
    # When it is torn down
    done = project.cli("teardown")
    # Then every process it started is gone, checked by pid
    assert "stopped" in done.stdout
    assert not any(pid_alive(p) for p in [*pids, manager, nginx_master])
    assert project.state()["replicas"] == []


def test_a_second_cli_is_refused_while_one_holds_the_lock(project: Project) -> None:
    project.cli("deploy")
    # Given one CLI holding the project lock (a promote blocked on a slow step)
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import time; from pathlib import Path; from swiftdeploy.lock import project_lock\n"
            f"with project_lock(Path({str(project.state_dir)!r})):\n"
            "    print('locked', flush=True); time.sleep(30)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "locked"
        before = project.state()
        # When a second one tries to act
        done = project.cli("canary", "v2", check=False)
        # Then it is refused with the holder's pid, and the state is untouched
        assert done.returncode == 1
        assert f"rollout in progress (pid {holder.pid})" in done.stderr
        assert project.state() == before
    finally:
        holder.kill()
        holder.communicate()


def test_status_without_deploy_is_clear(project: Project) -> None:
    done = project.cli("weight", "30", check=False)
    assert done.returncode == 1
    assert "no canary is running" in done.stderr
    assert "Traceback" not in done.stderr
