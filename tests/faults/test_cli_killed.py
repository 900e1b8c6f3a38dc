"""Crashes of the processes that run a rollout, under load. The CLI only follows the
rollout, so killing it changes nothing; the driver (run by the project's supervisor) is
what a crash can hit: killed with SIGKILL in any phase it is restarted and finishes the
rollout; stopped with SIGTERM it finishes its look and leaves a consistent state that
`resume` carries on. After each: nginx routes exactly the running replicas, nothing else
runs, no request failed, and the audit chain verifies."""

from __future__ import annotations

import os
import signal

import pytest
from bench.support.project import Project, fast_rollout, tune

from swiftdeploy.runtime.supervisor import ProcessSupervisor
from tests.conftest import (
    assert_restart_recorded,
    assert_routes_match_state,
    driver_info,
    finish,
    phase_is,
    version_counts,
    wait_for,
    wait_for_driver,
)
from tests.faults.conftest import assert_chain_verifies, rolling_out

pytestmark = pytest.mark.e2e

PLATFORM = {"nginx", "opa", "prometheus"}


def driver_running(runtime: ProcessSupervisor) -> bool:
    return any(p.name == "driver" and p.running for p in runtime.processes())


def assert_consistent(project: Project) -> None:
    state = project.state()
    runtime = ProcessSupervisor(project.state_dir)
    if state["phase"] in ("promoted", "rolled-back"):
        # a driver whose rollout ended exits (once it has recorded that it does)
        wait_for(lambda: not driver_running(runtime), timeout=60, what="the driver's exit")
    processes = {p.name: p for p in runtime.processes()}
    replicas = {r["name"] for r in state["replicas"]}
    # every replica in the state runs, and nothing runs that the state does not know
    # (the driver's program stays listed once it has exited)
    assert all(processes[name].running for name in replicas)
    assert set(processes) - replicas <= PLATFORM | {"driver"}
    assert_routes_match_state(project)


def assert_served_by(project: Project, final: str) -> None:
    expected = "v2" if final == "promoted" else "v1"
    assert version_counts(project.url + "/", 40) == {expected: 40}


CASES = [
    # (phase to kill the driver in, the fault that gets there, final phase, exit code)
    ("progressing", None, "promoted", 0),
    ("paused", None, "promoted", 0),
    ("promoting", None, "promoted", 0),
    ("rolling-back", ["--error-rate", "0.5"], "rolled-back", 3),
]


@pytest.mark.parametrize(
    ("phase", "fault", "final", "code"), CASES, ids=[f"{c[0]}-to-{c[2]}" for c in CASES]
)
def test_the_driver_killed_in_each_phase_is_restarted_and_finishes(
    project: Project, phase: str, fault: list[str] | None, final: str, code: int
) -> None:
    # Given a rollout of v2 (with a timed pause after step 1) under load, followed by
    # its CLI off a terminal (to the end, with the exit code)
    fast_rollout(project, [{"weight": 20, "pause": "3s"}, {"weight": 50}])
    with rolling_out(project, canary_up=bool(fault)) as (rollout, load):
        if fault:
            project.cli("chaos", *fault)
        # When the driver is killed with SIGKILL as soon as the phase shows
        wait_for(phase_is(project, phase), timeout=90, what=f"phase {phase}")
        killed = wait_for_driver(project)
        os.kill(killed, signal.SIGKILL)
        # Then the supervisor restarts it, it carries on from the persisted phase, and
        # the CLI that follows sees the rollout end as if nothing happened
        output = finish(rollout, timeout=240)
    assert rollout.returncode == code, output
    assert project.state()["phase"] == final
    info = driver_info(project)
    assert info is not None
    assert info["restarts"] >= 1, info
    assert info["pid"] != killed, info
    assert info["exited"] == f"the rollout ended: {final}", info
    assert_restart_recorded(project, info["pid"])  # and `swiftdeploy events` tells it
    # And the world matches the state, and every request is answered
    assert_consistent(project)
    assert_served_by(project, final)
    # And no request failed but the chaos the test itself injected
    assert load[0].total > 0
    assert load[0].errors == {}, load[0]
    assert fault is not None or load[0].failed == 0, load[0]
    assert_chain_verifies(project)


def test_a_rollback_while_the_killed_driver_restarts_ends_the_rollout(project: Project) -> None:
    # Given a rollout in progress under load whose driver was just killed with SIGKILL
    fast_rollout(project, [{"weight": 20, "pause": "3s"}, {"weight": 50}])
    with rolling_out(project) as (rollout, load):
        os.kill(wait_for_driver(project), signal.SIGKILL)
        # When a person rolls it back at once (the driver restarting, or restarted)
        done = project.cli("rollback", check=False, timeout=240)
        output = finish(rollout, timeout=120)
    # Then the rollout is rolled back, and the CLI that followed it says so (exit 3)
    assert done.returncode == 0, done.stdout + done.stderr
    assert project.state()["phase"] == "rolled-back"
    assert rollout.returncode == 3, output
    assert_consistent(project)
    assert_served_by(project, "rolled-back")
    assert load[0].failed == 0, load[0]
    assert_chain_verifies(project)


def test_the_cli_killed_changes_nothing(project: Project) -> None:
    # Given a rollout in progress under load
    fast_rollout(project, [{"weight": 20, "pause": "3s"}, {"weight": 50}])
    with rolling_out(project) as (rollout, load):
        driver = wait_for_driver(project)
        # When the CLI that started it is killed with SIGKILL
        rollout.kill()
        finish(rollout, timeout=10)
        # Then the same driver carries the rollout to the end, with no restart
        wait_for(phase_is(project, "promoted"), timeout=240, what="the rollout promoted")
    info = driver_info(project)
    assert info is not None
    assert (info["pid"], info["restarts"]) == (driver, 0), info
    assert_consistent(project)
    assert_served_by(project, "promoted")
    assert load[0].failed == 0, load[0]
    assert_chain_verifies(project)


def test_a_driver_stopped_with_sigterm_leaves_a_consistent_state_that_resume_carries_on(
    project: Project,
) -> None:
    # Given a rollout in its first step under load (a step that takes a while)
    fast_rollout(project, [{"weight": 20}, {"weight": 50}])
    tune(project, min_duration="10s", max_duration="3m")
    with rolling_out(project) as (rollout, load):
        wait_for(lambda: project.state()["canary_weight"] == 20, what="step 1 at 20%")
        # When its driver is stopped with SIGTERM (as a supervisor stops a program)
        stopped = wait_for_driver(project)
        os.kill(stopped, signal.SIGTERM)
        # Then it finishes its look and exits on purpose: it is not restarted
        wait_for(lambda: (driver_info(project) or {}).get("exited"), timeout=60, what="exit")
        info = driver_info(project)
        assert info is not None
        assert info["exited"].startswith("stopped (SIGTERM)"), info
        # And the CLI that followed says nothing drives it any more (exit 1)
        output = finish(rollout, timeout=120)
        assert rollout.returncode == 1, output
        assert "no driver runs rollout" in output
        # And the state is consistent: the canary at its step's weight, routed
        state = project.state()
        assert (state["phase"], state["canary_weight"]) == ("progressing", 20)
        assert_consistent(project)
        status = project.cli("status", "--window", "0").stdout
        assert "no driver (stopped (SIGTERM)" in " ".join(status.split())
        # And `resume` starts a driver that carries the rollout to the end
        done = project.cli("resume", check=False, timeout=240)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "no driver was running: started one" in done.stderr
    assert project.state()["phase"] == "promoted"
    assert_consistent(project)
    assert_served_by(project, "promoted")
    assert load[0].failed == 0, load[0]
    assert_chain_verifies(project)
