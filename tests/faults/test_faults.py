"""Faults injected in the middle of a rollout under load. Each test asserts the final
phase, that no request failed beyond those in flight at the fault, and that the audit
chain verifies."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time

import pytest
import yaml
from bench.support.project import Project, fast_rollout, tune

from swiftdeploy.runtime.supervisor import ProcessSupervisor
from tests.conftest import finish, finish_while, wait_for, wait_for_driver
from tests.faults.conftest import assert_chain_verifies, rolling_out, under_load

pytestmark = pytest.mark.e2e


def test_opa_killed_holds_then_resume_continues(project: Project) -> None:
    # Given a rollout gated by OPA, with a short step limit
    fast_rollout(project)
    tune(project, max_duration="8s")
    with rolling_out(project) as (rollout, load):
        # When OPA goes away during analysis
        ProcessSupervisor(project.state_dir).stop("opa")
        output = finish(rollout)
        # Then every gate denies, nothing is promoted, and the rollout is held (exit 4)
        assert rollout.returncode == 4, output
        assert "policy engine unreachable" in output
        state = project.state()
        assert (state["phase"], state["pause_kind"]) == ("paused", "held")
        assert state["stable_version"] == "v1"
        # And `resume` has the driver start OPA again and go on with the step's evidence
        done = project.cli("resume", "--detach", check=False, timeout=240)
        assert done.returncode == 0, done.stdout + done.stderr
        assert "resumed at step 1" in done.stdout
        assert any(
            p.name == "opa" and p.running for p in ProcessSupervisor(project.state_dir).processes()
        )

        # And the driver carries the rollout to the end: a held step keeps looking, so
        # the evidence decides it even where a busy machine's latency bursts (judged
        # slower: stats.dispersion) make it outlast the 8 s limit again
        def stopped_at() -> dict[str, object]:  # where it stopped, the last look's reasons
            state = project.state()
            return {k: state.get(k) for k in ("phase", "pause_kind", "step_index", "last_look")}

        wait_for(
            lambda: project.state()["phase"] == "promoted",
            timeout=240,
            what="promoted",
            seen=stopped_at,
        )
    assert load[0].failed == 0, load[0]
    assert_chain_verifies(project)


def test_prometheus_unreachable_is_never_a_pass(project: Project) -> None:
    # Given a rollout measured by a real Prometheus
    fast_rollout(project)
    tune(project, max_duration="8s")
    manifest = yaml.safe_load(project.manifest.read_text())
    manifest["metrics"]["provider"] = "prometheus"
    manifest["metrics"]["prometheus"] = {"scrape_interval": "500ms"}
    project.manifest.write_text(yaml.safe_dump(manifest))
    with rolling_out(project) as (rollout, load):
        # When Prometheus goes away mid-step
        ProcessSupervisor(project.state_dir).stop("prometheus")
        output = finish(rollout)
    # Then the looks report a provider error and the step holds past its limit for a
    # person (exit 4): nothing is promoted, and lack of data never rolls back
    assert rollout.returncode == 4, output
    assert "metrics provider failed" in output
    state = project.state()
    assert (state["phase"], state["pause_kind"]) == ("paused", "held")
    assert state["stable_version"] == "v1"
    assert load[0].failed == 0, load[0]
    assert_chain_verifies(project)


def test_nginx_sigkill_comes_back_with_the_current_weights(project: Project) -> None:
    # Given a canary at 20% under load, in a paused step
    fast_rollout(project, [{"weight": 20, "pause": "manual"}, {"weight": 50}])
    project.cli("deploy")
    # (paused for `promote`; or, where a busy machine's latency leaves step 1 undecided
    # at max_duration, held, the canary at its weight all the same: exit 4)
    assert project.cli("rollout", "v2", check=False, timeout=240).returncode in (0, 4)
    assert (project.state()["phase"], project.state()["canary_weight"]) == ("paused", 20)
    master = int((project.state_dir / "nginx" / "nginx.pid").read_text())
    with under_load(project) as load:
        time.sleep(2)
        # When nginx's master is killed with SIGKILL
        os.kill(master, signal.SIGKILL)
        wait_for(
            lambda: (project.state_dir / "nginx" / "nginx.pid").read_text().strip() != str(master),
            what="a new nginx",
        )
        time.sleep(3)
    # Then supervisord restarted it with the persisted weights and endpoints, not defaults
    routes = project.admin_get("/routes").json()["routes"]
    assert routes["weights"]["canary"] == 20
    assert routes["endpoints"]["canary"]
    # And only requests in flight at the kill (one per connection at most) failed
    assert load[0].failed <= 8, load[0]
    # And the rollout goes on to the end: `promote` has its driver go on to step 2
    assert project.cli("promote", check=False, timeout=240).returncode == 0
    wait_for(lambda: project.state()["phase"] == "promoted", timeout=240, what="promoted")
    assert_chain_verifies(project)


def test_a_crash_looping_canary_is_rolled_back_as_unhealthy(project: Project) -> None:
    fast_rollout(project)
    runtime = ProcessSupervisor(project.state_dir)

    def kill_canaries() -> None:
        for process in runtime.processes():
            if process.name.startswith("canary-") and process.pid:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(process.pid, signal.SIGKILL)

    with rolling_out(project) as (rollout, load):
        output = finish_while(rollout, kill_canaries)
    assert rollout.returncode == 3, output
    assert "canary is unhealthy" in output
    assert project.state()["phase"] == "rolled-back"
    # nginx retried the idempotent requests that met the dying canary on another replica
    assert load[0].failed == 0, load[0]
    assert_chain_verifies(project)


def test_a_full_audit_disk_stops_the_rollout_until_there_is_room(project: Project) -> None:
    # Given the audit trail on a small tmpfs, and a rollout under load
    audit_dir = project.root / "audit"
    audit_dir.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(audit_dir)], check=True)
    try:
        fast_rollout(project)
        manifest = yaml.safe_load(project.manifest.read_text())
        manifest["audit"]["path"] = "audit/history.jsonl"
        project.manifest.write_text(yaml.safe_dump(manifest))
        with rolling_out(project) as (rollout, load):
            # When the disk fills up in the middle of the analysis
            filler = audit_dir / "filler"
            subprocess.run(
                ["dd", "if=/dev/zero", f"of={filler}", "bs=64k"], capture_output=True, check=False
            )
            # Then the driver stops at the record it cannot write, saying so in one line
            # in its log (its supervisor restarts it; each stops there again)
            log = project.state_dir / "logs" / "driver.log"
            wait_for(lambda: "cannot record" in log.read_text(), timeout=90, what="the error")
            errors = [ln for ln in log.read_text().splitlines() if "swiftdeploy: error:" in ln]
            assert errors, log.read_text()
            assert all("cannot record" in line for line in errors), errors
            # And it takes no unrecorded action
            state = project.state()
            assert (state["phase"], state["stable_version"]) == ("progressing", "v1")
            # And once there is room again, `resume` (or the driver's next restart)
            # carries it to the end, and the CLI that follows it sees it promoted
            filler.unlink()
            done = project.cli("resume", check=False, timeout=240)
            output = finish(rollout)
        assert done.returncode == 0, done.stdout + done.stderr
        assert project.state()["phase"] == "promoted"
        assert rollout.returncode == 0, output
        assert load[0].failed == 0, load[0]
        assert_chain_verifies(project)
    finally:
        project.cli("teardown", check=False)
        subprocess.run(["umount", str(audit_dir)], check=False)


def test_a_second_rollout_is_refused_while_a_driver_holds_the_project(project: Project) -> None:
    fast_rollout(project, [{"weight": 20, "pause": "manual"}, {"weight": 50}])
    # about the refusal, not latency: a coarser regression to catch, so a machine at load
    # 6 per core does not end the healthy rollout meanwhile (a clean-clone run found its
    # canary gone when it looked)
    policy = yaml.safe_load(project.manifest.read_text())
    policy["policy"]["detect"]["latency"] = "+250ms"
    project.manifest.write_text(yaml.safe_dump(policy))
    with rolling_out(project) as (rollout, load):
        # (the canary ready, the first step's weight is set a moment later: wait for it,
        # so the rollout's own move is not taken for the second CLI's)
        wait_for(lambda: project.state()["canary_weight"] == 20, what="step 1 at 20%")
        driver = wait_for_driver(project)
        # When another terminal starts a rollout of another version, or deploys one
        for command in (["rollout", "v3"], ["deploy", "v3"]):
            before = project.state()
            second = project.cli(*command, check=False)
            # Then it is refused with the driver's pid, and nothing of it happened: the
            # same rollout, and v3 nowhere
            assert second.returncode == 1, second.stdout + second.stderr
            assert f"rollout in progress (pid {driver})" in second.stderr
            state = project.state()
            assert state["rollout_id"] == before["rollout_id"], state
            assert "v3" not in (state["canary_version"], state["stable_version"]), state
            assert {r["version"] for r in state["replicas"]} <= {"v1", "v2"}, state
        finish(rollout)
    assert project.state()["phase"] == "paused"
    assert load[0].failed == 0, load[0]
    assert_chain_verifies(project)
