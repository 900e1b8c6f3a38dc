"""The CLI killed with SIGKILL in each phase of a rollout, under load; `resume` or
`rollback` then reaches a consistent state: nginx routes exactly the running replicas,
nothing else runs, no request failed, and the audit chain verifies. SIGTERM lets the
current look finish."""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Callable

import pytest

from swiftdeploy.runtime.local import SupervisorRuntime
from tests.conftest import (
    Project,
    assert_routes_match_state,
    fast_rollout,
    finish,
    version_counts,
    wait_for,
)
from tests.faults.conftest import assert_chain_verifies, rolling_out

pytestmark = pytest.mark.e2e


def phase_is(project: Project, phase: str) -> Callable[[], bool]:
    def check() -> bool:
        try:
            return bool(project.state()["phase"] == phase)
        except (FileNotFoundError, json.JSONDecodeError):
            return False

    return check


def assert_consistent(project: Project) -> None:
    state = project.state()
    runtime = SupervisorRuntime(project.state_dir)
    processes = {p.name: p for p in runtime.processes()}
    replicas = {r["name"] for r in state["replicas"]}
    # every replica in the state runs, and nothing runs that the state does not know
    assert all(processes[name].running for name in replicas)
    assert set(processes) - replicas <= {"nginx", "opa", "prometheus"}
    assert_routes_match_state(project)


CASES = [
    # (phase to kill in, how it gets there, recovery command, final phase)
    ("progressing", None, "resume", "promoted"),
    ("progressing", None, "rollback", "rolled-back"),
    ("paused", None, "resume", "promoted"),
    ("promoting", None, "resume", "promoted"),
    ("rolling-back", ["--error-rate", "0.5"], "resume", "rolled-back"),
    ("rolling-back", ["--error-rate", "0.5"], "rollback", "rolled-back"),
]


@pytest.mark.parametrize(
    ("phase", "fault", "recovery", "final"),
    CASES,
    ids=[f"{c[0]}-then-{c[2]}" for c in CASES],
)
def test_kill_9_in_each_phase_then_recover(
    project: Project, phase: str, fault: list[str] | None, recovery: str, final: str
) -> None:
    # Given a rollout of v2 (with a timed pause after step 1) under load
    fast_rollout(project, [{"weight": 20, "pause": "3s"}, {"weight": 50}])
    with rolling_out(project, canary_up=bool(fault)) as (rollout, load):
        if fault:
            project.cli("chaos", *fault)
        # When the CLI is killed with SIGKILL as soon as the phase shows
        wait_for(phase_is(project, phase), timeout=90, what=f"phase {phase}")
        os.kill(rollout.pid, signal.SIGKILL)
        finish(rollout, timeout=10)
        # Then the recovery command finishes the job
        done = project.cli(recovery, check=False, timeout=240)
    assert done.returncode in (0, 3), done.stdout + done.stderr
    state = project.state()
    assert state["phase"] == final
    # And the world matches the state, and every request is answered
    assert_consistent(project)
    expected = "v2" if final == "promoted" else "v1"
    assert version_counts(project.url + "/", 40) == {expected: 40}
    # And no request failed but the chaos the test itself injected
    assert load[0].errors == {}, load[0]
    assert fault is not None or load[0].failed == 0, load[0]
    assert_chain_verifies(project)


def test_sigterm_finishes_the_current_look(project: Project) -> None:
    fast_rollout(project, [{"weight": 20, "pause": "manual"}, {"weight": 50}])
    with rolling_out(project) as (rollout, load):
        rollout.send_signal(signal.SIGTERM)
        output = finish(rollout, timeout=60)
    assert rollout.returncode in (0, 130), output
    assert project.state()["phase"] in ("progressing", "paused")
    assert_consistent(project)
    assert load[0].failed == 0, load[0]
    assert_chain_verifies(project)
