"""Notifications from the driver on a local project, through the CLI, to real receivers
on loopback (Slack-, Teams-shaped and generic): a whole rollout's events each delivered
once by Idempotency-Key, in order, signed, through 30% failures and 10% hangs; a driver
killed with a delivery pending delivers it after its restart, once; dead letters in
`status` and `events`; and a hanging receiver leaves the look interval as it was."""

from __future__ import annotations

import json
import os
import signal
import statistics
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from bench.support.project import (
    Project,
    fast_rollout,
    look_intervals,
    new_project,
    notify,
    teardown,
    tune,
)
from bench.support.receivers import Receiver

from tests.conftest import driver_info, phase_is, wait_for, wait_for_driver

pytestmark = pytest.mark.e2e

KEY = "e2e-signing-key-0123456789abcdef"


@pytest.fixture(autouse=True)
def signing_key(monkeypatch: pytest.MonkeyPatch) -> None:
    # the CLI's environment goes to the driver it starts
    monkeypatch.setenv("SD_SIGNING_KEY", KEY)


def events_of(project: Project, rollout_id: str) -> list[dict[str, Any]]:
    done = project.cli("events", "--rollout", rollout_id)
    return [json.loads(line) for line in done.stdout.splitlines()]


def ids(events: list[dict[str, Any]], *areas: str) -> list[str]:
    return [e["id"] for e in events if not areas or e["type"].split(".")[2] in areas]


def driver_done(project: Project) -> bool:
    info = driver_info(project)
    return bool(info and info["exited"])


def test_a_rollouts_events_reach_each_receiver_once_in_order_signed(
    rollout_project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = rollout_project
    with (
        Receiver("slack", KEY.encode(), fail=0.3, hang=0.1, hang_s=1.0, seed=1) as slack,
        Receiver("teams", KEY.encode(), fail=0.3, hang=0.1, hang_s=1.0, seed=4) as teams,
        Receiver("webhook", KEY.encode(), fail=0.3, hang=0.1, hang_s=1.0, seed=3) as log,
        Receiver("webhook", KEY.encode(), refusing=True) as broken,
    ):
        # Given sinks whose receivers fail 30% and hang 10% of deliveries (the Slack
        # URL a secret from the environment), and one that refuses everything (422)
        monkeypatch.setenv("SD_SLACK_URL", slack.url)
        notify(project, [
            {"name": "oncall", "kind": "slack", "url": {"env": "SD_SLACK_URL"},
             "events": ["rollout.*", "driver.exited"]},
            {"name": "team", "kind": "teams", "url": teams.url, "events": ["rollout.*"]},
            {"name": "log", "kind": "webhook", "url": log.url, "events": ["*"]},
            {"name": "broken", "kind": "webhook", "url": broken.url,
             "events": ["rollout.promoted"]},
        ])  # fmt: skip
        project.cli("validate")
        # When a whole rollout runs
        project.cli("rollout", "v2", timeout=240)
        rollout_id = project.state()["rollout_id"]
        assert project.state()["phase"] == "promoted"
        wait_for(lambda: driver_done(project), timeout=120, what="the driver's drain and exit")
        events = events_of(project, rollout_id)
        # Then every event reached each receiver exactly once, in the trail's order
        assert log.accepted == ids(events)
        assert teams.accepted == ids(events, "rollout")
        said = [e["id"] for e in events if e["type"].split(".")[2] == "rollout"
                or e["type"].endswith("driver.exited.v1")]  # fmt: skip
        assert slack.accepted == said
        for receiver in (slack, teams, log):
            assert receiver.duplicates == []
            assert all(d.signed for d in receiver.deliveries)
            assert receiver.attempts() > len(receiver.accepted)  # faults did happen
        # and the Slack message says what happened, why, what next, and the report
        promoted = next(e for e in events if e["type"].endswith("rollout.promoted.v1"))
        text = slack.bodies[promoted["id"]]["text"]
        assert "demo v2: promoted" in text
        assert "Why:" in text
        assert f"swiftdeploy audit report --rollout {rollout_id}" in text
        # And the refused one is a dead letter, in the trail's events and in status
        dead = [e for e in events if e["type"].endswith("notification.dead-letter.v1")]
        assert [(e["data"]["sink"], e["data"]["event_id"], e["data"]["attempts"])
                for e in dead] == [("broken", promoted["id"], 1)]  # fmt: skip
        status = json.loads(project.cli("status", "--json", "--window", "0").stdout)
        standing = {s["name"]: s for s in status["notifications"]}
        assert [d["event_id"] for d in standing["broken"]["dead_letters"]] == [promoted["id"]]
        assert (standing["log"]["pending"], standing["log"]["dead_letters"]) == (0, [])
        human = project.cli("status", "--window", "0").stdout
        assert "notifications to broken (webhook): up to date, 1 dead letter(s)" in human
        assert slack.url not in project.cli("events").stdout + human  # never the secret URL


def test_the_driver_killed_with_a_delivery_pending_delivers_it_after_restart_once(
    rollout_project: Project,
) -> None:
    project = rollout_project
    tune(project, min_duration="5m", max_duration="10m")  # steps that wait for the test
    with Receiver("webhook", KEY.encode(), down=True) as log:
        notify(project, [{"name": "log", "kind": "webhook", "url": log.url}], retries=20,
               backoff="100ms")  # fmt: skip
        # Given the receiver down while a rollout starts: its first events wait
        project.cli("rollout", "v2", "--detach")
        killed = wait_for_driver(project)
        wait_for(lambda: log.attempts() >= 2, timeout=60, what="deliveries tried")
        assert log.accepted == []
        # When the driver is killed with SIGKILL, and the receiver comes back
        os.kill(killed, signal.SIGKILL)
        log.down = False
        wait_for_driver(project, other_than=killed, timeout=90)
        rollout_id = project.state()["rollout_id"]
        project.cli("abort")
        wait_for(phase_is(project, "rolled-back"), timeout=120, what="rolled back")
        wait_for(lambda: driver_done(project), timeout=120, what="the driver's exit")
        # Then every event, those recorded before the kill too, was delivered once
        events = events_of(project, rollout_id)
        assert log.accepted == ids(events)
        assert log.duplicates == []
        assert "dev.swiftdeploy.driver.restarted.v1" in {e["type"] for e in events}


@pytest.fixture
def two_projects() -> Iterator[tuple[Project, Project]]:
    made = [new_project(Path(tempfile.mkdtemp(prefix="sd-", dir="/tmp"))) for _ in range(2)]
    try:
        yield made[0], made[1]
    finally:
        for project in made:
            teardown(project)


def test_a_hanging_receiver_leaves_the_look_interval_as_it_was(
    two_projects: tuple[Project, Project],
) -> None:
    hanging, quiet = two_projects
    with Receiver("webhook", KEY.encode(), hang=1.0, hang_s=5.0) as receiver:
        # Given two projects side by side, steps that keep looking, a 1 s look interval;
        # one notifies a receiver that hangs on every delivery (timeout 2 s), one nothing
        for project in (hanging, quiet):
            fast_rollout(project)
            tune(project, min_duration="5m", max_duration="10m", interval="1s")
        notify(hanging, [{"name": "log", "kind": "webhook", "url": receiver.url}],
               timeout="2s")  # fmt: skip

        def roll(project: Project) -> None:
            project.cli("deploy")
            project.cli("rollout", "v2", "--detach")

        threads = [threading.Thread(target=roll, args=(p,)) for p in (hanging, quiet)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(240)
        # When both look for a while
        wait_for(lambda: len(look_intervals(hanging)) >= 12 and len(look_intervals(quiet)) >= 12,
                 timeout=120, what="a dozen looks each")  # fmt: skip
        for project in (hanging, quiet):
            project.cli("abort")
        # Then the intervals match: nothing in the engine waited on the receiver
        with_hang, without = look_intervals(hanging), look_intervals(quiet)
        assert receiver.attempts() >= 3  # it did hang on deliveries meanwhile
        median_hang, median_quiet = statistics.median(with_hang), statistics.median(without)
        print(f"look interval median: {median_hang:.3f}s hanging receiver, "
              f"{median_quiet:.3f}s none")  # fmt: skip
        assert median_hang < median_quiet * 1.5 + 0.25
        assert max(with_hang) < 2.0 * 1.5 + max(without)  # no look waited on a timeout
