"""A rollout that runs on its own (issue 20), on `local`: its driver runs under the
project's supervisor, so the terminal that started it may detach, close or die; any
other terminal steers it, each request recorded as the person's; `status` says who
drives; a rollout that cannot be decided says so at once; and `rollout --events` is
the rollout's every state change, once each and in order, in the published schema."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from typing import Any

import pytest
import yaml
from bench.support.project import SWIFTDEPLOY, Project, trail, tune
from jsonschema import Draft202012Validator

from swiftdeploy.review.events import schema_text
from swiftdeploy.state.control import requester
from tests.conftest import (
    BackgroundCli,
    canary_ready,
    canary_weight_routed,
    driver_info,
    finish_outputs,
    phase_is,
    recorded_events,
    version_counts,
    wait_for,
    wait_for_driver,
)

pytestmark = pytest.mark.e2e

DETACHED = "detached: the rollout goes on; `swiftdeploy attach`, `status`, `abort`"
VALIDATOR = Draft202012Validator(
    json.loads(schema_text()), format_checker=Draft202012Validator.FORMAT_CHECKER
)


def long_steps(project: Project) -> None:
    """Steps that do not pass on their own while a test steers them."""
    tune(project, min_duration="5m", max_duration="10m")


def promoted_on_its_own(project: Project, version: str) -> None:
    wait_for(phase_is(project, "promoted"), timeout=240, what="the rollout promoted")
    assert version_counts(project.url + "/", 20) == {version: 20}


def requests_in_trail(project: Project, rollout_id: str) -> list[tuple[str, str]]:
    """(verb, who asked) of each person's request to the rollout, in order."""
    return [
        (r["verb"], r["requested_by"])
        for r in trail(project)
        if r["kind"] == "request" and r["rollout_id"] == rollout_id
    ]


def names(events: list[dict[str, Any]]) -> list[str]:
    """`rollout.step` for dev.swiftdeploy.rollout.step.v1."""
    return [e["type"].removeprefix("dev.swiftdeploy.").removesuffix(".v1") for e in events]


def assert_same_driver(project: Project, driver: int) -> None:
    info = driver_info(project)
    assert info is not None
    assert (info["pid"], info["restarts"]) == (driver, 0), info


# --- the terminal that started it: the scenarios, also run on docker -------------------


def ctrl_c_detaches(project: Project, version: str) -> None:
    tune(project, min_duration="8s")  # time for `attach` to find it still running
    with BackgroundCli(project, "rollout", version) as cli:
        # Given the CLI following the rollout it started
        cli.wait_for_line(f"rollout of {version}")
        driver = wait_for_driver(project)
        # When Ctrl-C reaches its process group, as a terminal sends it
        cli.signal_group(signal.SIGINT)
        # Then it detaches with one line and exit 0
        assert cli.finish(timeout=60) == 0, cli.output
    assert DETACHED in cli.lines, cli.output
    # And the same driver goes on, and `attach` from another terminal follows it to the end
    attached = project.cli("attach", check=False, timeout=240)
    assert attached.returncode == 0, attached.stdout + attached.stderr
    assert f"promoted: {version} is stable" in attached.stdout
    promoted_on_its_own(project, version)
    assert_same_driver(project, driver)


def terminal_closed(project: Project, version: str) -> None:
    # steps long enough that the CLI still follows when its terminal closes, however
    # busy the machine (a clean-clone run saw the whole rollout end before the hangup)
    tune(project, min_duration="30s")
    with BackgroundCli(project, "rollout", version) as cli:
        # Given the CLI following the rollout it started
        cli.wait_for_line(f"rollout of {version}")
        driver = wait_for_driver(project)
        rollout_id = project.state()["rollout_id"]
        # When its terminal closes (SIGHUP to the CLI's process group)
        cli.signal_group(signal.SIGHUP)
        assert cli.finish(timeout=60) == -signal.SIGHUP, cli.output
    # Then the rollout goes on to the end under the same driver, which nobody asked
    # anything
    promoted_on_its_own(project, version)
    assert_same_driver(project, driver)
    assert requests_in_trail(project, rollout_id) == []


def steered(project: Project, version: str) -> None:
    long_steps(project)
    me = requester()
    # Given a rollout handed to its driver (--detach returns at once)
    started = project.cli("rollout", version, "--detach")
    assert "goes on under its driver" in started.stdout
    wait_for(lambda: project.state()["canary_weight"] == 20, timeout=90, what="step 1 at 20%")
    rollout_id = project.state()["rollout_id"]
    # When other terminals set its weight, pause, resume, promote and abort it
    weighted = project.cli("weight", "10")
    # Then each acts on the running rollout
    assert f"weight set by {me}" in weighted.stdout
    assert project.state()["canary_weight"] == 10
    assert canary_weight_routed(project) == 10
    project.cli("pause", "--reason", "checking the dashboards")
    state = project.state()
    assert (state["phase"], state["pause_kind"]) == ("paused", "operator")
    assert state["canary_weight"] == 10
    project.cli("resume", "--detach")
    assert (project.state()["phase"], project.state()["pause_kind"]) == ("progressing", None)
    promoted = project.cli("promote")
    assert f"promoted by {me}" in promoted.stdout
    state = project.state()
    assert (state["step_index"], state["canary_weight"]) == (1, 50)
    assert canary_weight_routed(project) == 50
    aborted = project.cli("abort", "--reason", "enough")
    assert f"aborted by {me}" in aborted.stdout
    assert (project.state()["phase"], canary_weight_routed(project)) == ("rolled-back", 0)
    # And the trail has each as the person's request, in order, with their reasons
    assert requests_in_trail(project, rollout_id) == [
        ("weight", me), ("pause", me), ("resume", me), ("promote", me), ("abort", me)
    ]  # fmt: skip
    reasons = [
        r.get("reason")
        for r in trail(project)
        if r["kind"] == "request" and r["rollout_id"] == rollout_id
    ]
    assert reasons == [None, "checking the dashboards", None, None, "enough"]
    # And `swiftdeploy events` tells each request and the change it made, in order
    events = recorded_events(project, rollout_id)
    asked = [e for e in events if e["type"].startswith("dev.swiftdeploy.request.")]
    verbs = ("weight", "pause", "resume", "promote", "abort")
    assert names(asked) == [f"request.{verb}" for verb in verbs]
    assert {e["data"]["by"] for e in asked} == {me}
    changes = [n for n in names(events) if n.startswith("rollout.")]
    assert changes == [
        "rollout.started", "rollout.step", "rollout.weight", "rollout.paused", "rollout.resumed",
        "rollout.step", "rollout.aborted", "rollout.rolled-back",
    ]  # fmt: skip


def test_ctrl_c_detaches_and_the_rollout_promotes_anyway(rollout_project: Project) -> None:
    ctrl_c_detaches(rollout_project, "v2")


def test_the_terminal_closed_changes_nothing(rollout_project: Project) -> None:
    terminal_closed(rollout_project, "v2")


# The driver killed with SIGKILL, restarted, finishing without a failed request and its
# restart in the events: tests/faults/test_cli_killed.py (local; in each phase) and
# tests/e2e/test_docker.py (docker).


# --- a second terminal ---------------------------------------------------------------


def test_a_second_terminal_steers_the_running_rollout_as_the_person(
    rollout_project: Project,
) -> None:
    steered(rollout_project, "v2")


def stop_driver_program(project: Project) -> None:
    """`supervisorctl stop driver`, as a person at the project's supervisor would."""
    socket = f"unix://{project.state_dir / 'supervisor.sock'}"
    subprocess.run(
        [sys.executable, "-m", "supervisor.supervisorctl", "-s", socket, "stop", "driver"],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip


def kill_supervisor_and_driver(project: Project) -> None:
    supervisor = int((project.state_dir / "supervisord.pid").read_text())
    driver = wait_for_driver(project)
    os.kill(supervisor, signal.SIGKILL)
    os.kill(driver, signal.SIGKILL)


@pytest.mark.parametrize(
    ("kill", "why"),
    [
        (stop_driver_program, "no driver (stopped (SIGTERM)"),
        (kill_supervisor_and_driver, "no driver:"),
    ],
    ids=["supervisorctl-stop", "supervisord-killed"],
)
def test_status_with_the_driver_dead_says_so(rollout_project: Project, kill: Any, why: str) -> None:
    project = rollout_project
    long_steps(project)
    project.cli("rollout", "v2", "--detach")
    wait_for(lambda: project.state()["canary_weight"] == 20, timeout=90, what="step 1 at 20%")
    # Given `status` names the driver while it runs
    driver = wait_for_driver(project)
    shown = " ".join(project.cli("status", "--window", "0").stdout.split())
    assert f"driven by pid {driver}, since" in shown, shown
    # When the driver is stopped, or killed with its supervisor
    kill(project)
    # Then `status` says nothing drives the canary's 20%, and what to do
    shown = " ".join(project.cli("status", "--window", "0").stdout.split())
    assert why in shown, shown
    assert (
        "the canary takes 20% with nothing deciding; `swiftdeploy resume` or `swiftdeploy rollback`"
        in shown
    ), shown
    report = json.loads(project.cli("status", "--json", "--window", "0").stdout)
    assert (report["driver"]["running"], report["driver"]["pid"]) == (False, None)


# --- saying early what will happen ---------------------------------------------------


def test_a_rollout_with_no_traffic_warns_at_once(rollout_project: Project) -> None:
    # Given a service nobody sends requests to, and no load of the rollout's own
    project = rollout_project
    manifest = yaml.safe_load(project.manifest.read_text())
    del manifest["strategy"]["canary"]["analysis"]["load"]
    project.manifest.write_text(yaml.safe_dump(manifest))
    with BackgroundCli(project, "rollout", "v2") as cli:
        # When v2 rolls out
        warned = cli.wait_for_line("warning: no requests to the service")
        # Then it warns at once, before the rollout's first line, saying the step
        # cannot pass and when it will hold
        started = cli.wait_for_line("rollout of v2 started")
        assert warned < started, cli.output
        assert "so step 1 cannot pass; it holds at max_duration" in cli.lines[warned]
        # (and step 1 is entered with no result yet: no hold before max_duration)
        cli.wait_for_line("step 1 of 2")
        assert project.state()["pause_kind"] is None
        assert not any("held" in line for line in cli.lines), cli.output
        wait_for_driver(project)
        project.cli("abort")
        assert cli.finish(timeout=120) == 3, cli.output


# --- events ----------------------------------------------------------------------------


def rollout_with_events(project: Project, version: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [SWIFTDEPLOY, "rollout", version, "--events", "-f", str(project.manifest)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=project.root,
    )  # fmt: skip


def printed_events(
    project: Project, process: subprocess.Popen[str], code: int, changes: list[str]
) -> list[dict[str, Any]]:
    """Once `rollout --events` exits with `code`: every line it printed on stdout is an
    event valid in the published schema; the rollout's state changes are `changes`, each
    once and in order; and they are the events the trail holds for the rollout, the same
    ids in the same order."""
    stdout, stderr = finish_outputs(process, timeout=240)
    assert process.returncode == code, stderr
    lines = stdout.splitlines()
    events = [json.loads(line) for line in lines]
    for event in events:
        VALIDATOR.validate(event)
    assert len({e["id"] for e in events}) == len(events)
    assert [n for n in names(events) if n.startswith("rollout.")] == changes
    rollout_id = project.state()["rollout_id"]
    assert {e["subject"] for e in events} == {rollout_id}
    recorded = recorded_events(project, rollout_id)
    assert [e["id"] for e in events] == [e["id"] for e in recorded][: len(events)]
    return events


def test_rollout_events_of_a_promotion(rollout_project: Project) -> None:
    project = rollout_project
    process = rollout_with_events(project, "v2")
    changes = [
        "rollout.started",
        "rollout.step",
        "rollout.step",
        "rollout.promoting",
        "rollout.promoted",
    ]
    events = printed_events(project, process, 0, changes)
    assert names(events)[0] == "driver.started"
    steps = [e["data"] for e in events if e["type"].endswith("rollout.step.v1")]
    assert [(s["step"], s["steps"], s["weight"]) for s in steps] == [(1, 2, 20), (2, 2, 50)]


def test_rollout_events_of_a_rollback_by_policy(rollout_project: Project) -> None:
    project = rollout_project
    process = rollout_with_events(project, "v2")
    wait_for(lambda: canary_ready(project), what="the canary")
    project.cli("chaos", "--error-rate", "0.5")
    changes = ["rollout.started", "rollout.step", "rollout.rolling-back", "rollout.rolled-back"]
    events = printed_events(project, process, 3, changes)
    [back] = [e for e in events if e["type"].endswith("rolling-back.v1")]
    assert "error" in back["data"]["reason"]


def test_rollout_events_of_an_abort(rollout_project: Project) -> None:
    project = rollout_project
    long_steps(project)
    process = rollout_with_events(project, "v2")
    wait_for(lambda: project.state()["canary_weight"] == 20, timeout=90, what="step 1 at 20%")
    project.cli("abort", "--reason", "wrong build")
    changes = ["rollout.started", "rollout.step", "rollout.aborted", "rollout.rolled-back"]
    events = printed_events(project, process, 3, changes)
    assert "request.abort" in names(events)


def test_rollout_events_of_a_hold(rollout_project: Project) -> None:
    # Given steps that cannot be decided in time: too little load for a 6 s limit
    project = rollout_project
    tune(project, min_duration="2s", max_duration="6s", load={"rps": 2, "concurrency": 1})
    process = rollout_with_events(project, "v2")
    # When it rolls out, Then --events follows it to the hold and exits 4, as --wait does
    changes = ["rollout.started", "rollout.step", "rollout.held"]
    events = printed_events(project, process, 4, changes)
    [held] = [e for e in events if e["type"].endswith("held.v1")]
    assert held["data"]["weight"] == 20
    project.cli("abort")
