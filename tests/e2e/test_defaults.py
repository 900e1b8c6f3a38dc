"""Rollouts on `swiftdeploy init`'s defaults, at the traffic a small service has: the
decisions a new user gets without tuning anything."""

from __future__ import annotations

import shutil
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from bench.support.project import Project, new_project, teardown, tune

from swiftdeploy.loadgen import LoadRun
from tests.conftest import canary_ready, cold_start, finish, start_rollout, wait_for

pytestmark = pytest.mark.e2e


@pytest.fixture
def quiet_project() -> Iterator[Project]:
    root = Path(tempfile.mkdtemp(prefix="sd-", dir="/tmp"))
    project = new_project(root)
    try:
        yield project
    finally:
        teardown(project)
        shutil.rmtree(root, ignore_errors=True)


def _rollout_under_load(project: Project, rps: float, results: dict[str, object]) -> None:
    connections = 5 if rps >= 5 * 2 else 1
    load = LoadRun(project.url + "/", seconds=420, connections=connections,
                   rate_per_connection=rps / connections)  # fmt: skip
    try:
        results["rollout"] = project.cli("rollout", "v2", check=False, timeout=480)
    finally:
        load.stop()


@pytest.mark.timeout(600)  # a whole rollout on the defaults at 5 canary req/s: ~5 min
def test_a_cold_healthy_release_is_promoted_and_a_quiet_one_held_never_rolled_back(
    project: Project, quiet_project: Project
) -> None:
    # Given init's defaults at 50 req/s (5 canary req/s at the first step), and at
    # 5 req/s with the step limit cut to a minute so the test sees its hold
    busy, quiet = project, quiet_project
    tune(quiet, max_duration="1m")
    for each in (busy, quiet):
        each.cli("deploy")
    # And at 50 req/s a canary 300 ms slower for its first minute (a cold start: 3 ms
    # become 303, far past the latency bound), as good as v1 afterwards
    cold_start(busy, "300ms/60s")
    # When v2, as healthy as v1, rolls out in both at once
    outcomes: dict[str, dict[str, object]] = {"busy": {}, "quiet": {}}
    threads = [
        threading.Thread(target=_rollout_under_load, args=(busy, 50, outcomes["busy"])),
        threading.Thread(target=_rollout_under_load, args=(quiet, 5, outcomes["quiet"])),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=540)
    busy_done, quiet_done = outcomes["busy"]["rollout"], outcomes["quiet"]["rollout"]
    # Then at 50 req/s the cold canary is promoted: its warm-up was not evidence
    assert busy_done.returncode == 0, busy_done.stdout + busy_done.stderr
    assert busy.state()["stable_version"] == "v2"
    # (its heartbeats, in plain words, said it was warming up)
    assert "warming up:" in busy_done.stderr
    # And at 5 req/s it holds at the limit, saying what it needs and how long that takes
    assert quiet_done.returncode == 4, quiet_done.stdout + quiet_done.stderr
    assert "more canary requests to catch +1 point with 90% power (about" in quiet_done.stderr
    assert "its driver keeps collecting evidence and acts on it" in quiet_done.stderr
    state = quiet.state()
    assert (state["phase"], state["pause_kind"], state["canary_weight"]) == ("paused", "held", 10)
    # And `status` tells the same: where the step stands and what it needs
    shown = quiet.cli("status", "--window", "0").stdout
    assert "driven by pid" in shown  # a held step's driver keeps looking
    assert "last look" in shown
    assert "more canary requests, about" in shown


def test_five_percent_errors_are_rolled_back_on_the_defaults(project: Project) -> None:
    # Given init's defaults at 50 req/s
    project.cli("deploy")
    load = LoadRun(project.url + "/", seconds=300, connections=5, rate_per_connection=10)
    try:
        # When v2 rolls out and its canary fails 5% of requests
        rollout = start_rollout(project, "v2")
        wait_for(lambda: canary_ready(project), what="the canary")
        project.cli("chaos", "--error-rate", "0.05")
        output = finish(rollout, timeout=300)
    finally:
        load.stop()
    # Then it is rolled back on its errors: against the stable, or (the stable deployed
    # a moment before has never failed, so the comparison waits for its errors to be
    # known: docs/decisions.md "Bursts") above the absolute limit, which does not wait
    assert rollout.returncode == 3, output
    reasons = ("canary errors worse than stable", "canary error rate above ")
    assert any(reason in output for reason in reasons), output
    assert project.state()["phase"] == "rolled-back"
