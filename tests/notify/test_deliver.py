"""Delivery from the outbox over a real trail (AuditLog) to real receivers on loopback:
Given events recorded, When the notifier runs (and is stopped, restarted, drained),
Then each sink gets each of its events exactly once by Idempotency-Key, in trail
order, signed; failures are retried, then dead-lettered and recorded by the caller."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from bench.support.receivers import Receiver
from bench.support.sim import init_manifest

from swiftdeploy.audit.log import AuditLog
from swiftdeploy.audit.recorder import AuditRecorder
from swiftdeploy.manifest import LoadedManifest
from swiftdeploy.notify.deliver import Notifier, worst_case_s
from swiftdeploy.notify.messages import name_of
from swiftdeploy.notify.outbox import FileText, OutboxStore
from swiftdeploy.notify.secrets import resolve_secrets
from swiftdeploy.review.events import read_events

KEY = "test-signing-key-0123456789"
ENV = {"SD_KEY": KEY}


def loaded_with(tmp_path: Path, sinks: list[dict[str, Any]], **settings: Any) -> LoadedManifest:
    notifications = {"signing_key": {"env": "SD_KEY"}, "timeout": "300ms", "retries": 10,
                     "backoff": "20ms", "sinks": sinks, **settings}  # fmt: skip
    return init_manifest(tmp_path, notifications=notifications)


class Harness:
    """A trail, its recorder, and notifiers over one outbox file (as drivers come and go)."""

    def __init__(self, loaded: LoadedManifest, directory: Path) -> None:
        self.loaded = loaded
        self.trail = directory / "history.jsonl"
        self.state_dir = directory / "state"
        self.state_dir.mkdir(exist_ok=True)
        self.recorder = AuditRecorder(AuditLog(self.trail, 10**7, command=["swiftdeploy"]))
        self.said: list[str] = []
        self.notifier: Notifier | None = None

    def start(self) -> Notifier:
        secrets = resolve_secrets(self.loaded, ENV)
        outbox = OutboxStore(FileText(self.state_dir))
        notifier = Notifier(self.loaded.manifest, self.trail, outbox, secrets, self.said.append)
        notifier.start()
        self.notifier = notifier
        return notifier

    def rollout(self, rollout_id: str, steps: int = 3) -> None:
        """The transitions of a rollout that passes `steps` steps and is promoted."""
        record = self.recorder.record
        common = {"rollout_id": rollout_id, "stable_version": "v1", "canary_version": "v2"}
        record("driver", event="started", pid=1, restarts=0, rollout_id=rollout_id)
        record("transition", event="started", phase_before="idle", phase_after="progressing",
               reason="rollout started", step_index=0, canary_weight=10, **common)  # fmt: skip
        for index in range(1, steps):
            record("transition", event="step", phase_before="progressing",
                   phase_after="progressing", reason=f"step {index + 1}",
                   step_index=index, canary_weight=10 * (index + 1), **common)  # fmt: skip
        record("transition", event="promoted", phase_before="promoting", phase_after="promoted",
               reason="promoted", step_index=steps - 1, canary_weight=100, **common)  # fmt: skip

    def events(self, *patterns: str) -> list[dict[str, Any]]:
        found = list(read_events(self.trail, "demo"))
        if not patterns:
            return found
        return [e for e in found if any(name_of(e).startswith(p.rstrip("*")) for p in patterns)]

    def outbox(self) -> dict[str, Any]:
        return dict(json.loads((self.state_dir / "outbox.json").read_text()))


@pytest.fixture
def receivers() -> Iterator[dict[str, Receiver]]:
    made = {
        "slack": Receiver("slack", KEY.encode(), fail=0.3, hang=0.1, hang_s=0.6, seed=1),
        "teams": Receiver("teams", KEY.encode(), fail=0.3, hang=0.1, hang_s=0.6, seed=2),
        "log": Receiver("webhook", KEY.encode(), fail=0.3, hang=0.1, hang_s=0.6, seed=3),
    }
    for receiver in made.values():
        receiver.__enter__()
    yield made
    for receiver in made.values():
        receiver.__exit__()


def test_every_event_once_in_order_signed_through_30pct_failures_and_10pct_hangs(
    tmp_path: Path, receivers: dict[str, Receiver]
) -> None:
    # Given three sinks, each receiver failing 30% and hanging 10% of deliveries
    sinks = [
        {"name": "oncall", "kind": "slack", "url": receivers["slack"].url,
         "events": ["rollout.promoted", "rollout.rolled-back"]},
        {"name": "team", "kind": "teams", "url": receivers["teams"].url, "events": ["rollout.*"]},
        {"name": "log", "kind": "webhook", "url": receivers["log"].url},
    ]  # fmt: skip
    h = Harness(loaded_with(tmp_path, sinks), tmp_path)
    notifier = h.start()
    # When two rollouts are recorded and the notifier drains
    h.rollout("r1")
    h.rollout("r2", steps=2)
    try:
        assert notifier.drain(h.recorder, limit_s=60)
    finally:
        notifier.stop()
    # Then each receiver accepted each of its events once, in trail order
    assert receivers["log"].accepted == [e["id"] for e in h.events()]
    assert receivers["teams"].accepted == [e["id"] for e in h.events("rollout.")]
    assert receivers["slack"].accepted == [e["id"] for e in h.events("rollout.promoted")]
    for receiver in receivers.values():
        assert receiver.duplicates == []
        assert all(d.signed for d in receiver.deliveries)
        # and the faults happened: some attempts failed or hung
        assert receiver.attempts() > len(receiver.accepted)
    assert receivers["log"].bodies[h.events()[0]["id"]] == h.events()[0]  # the event itself
    cursors = h.outbox()["sinks"]
    assert cursors["log"]["delivered"] == len(h.events())
    assert all(c["dead"] == [] and c["attempts"] == 0 for c in cursors.values())


def test_a_delivery_pending_when_the_driver_stops_goes_at_the_next_start_once(
    tmp_path: Path,
) -> None:
    with Receiver("webhook", KEY.encode()) as receiver:
        sinks = [{"name": "log", "kind": "webhook", "url": receiver.url}]
        h = Harness(loaded_with(tmp_path, sinks), tmp_path)
        # Given the receiver down while events are recorded
        receiver.down = True
        first = h.start()
        h.rollout("r1", steps=1)
        deadline = time.monotonic() + 10
        while receiver.attempts() < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        # When the driver goes away with the first event in flight
        first.stop()
        assert h.outbox()["sinks"]["log"]["attempts"] >= 1  # its attempts were kept
        # and a new driver starts with the receiver back
        receiver.down = False
        second = h.start()
        try:
            assert second.drain(h.recorder, limit_s=30)
        finally:
            second.stop()
        # Then every event was delivered once, in order
        assert receiver.accepted == [e["id"] for e in h.events()]
        assert receiver.duplicates == []


def test_an_event_sent_but_not_saved_is_sent_again_with_the_same_key(tmp_path: Path) -> None:
    with Receiver("webhook", KEY.encode()) as receiver:
        sinks = [{"name": "log", "kind": "webhook", "url": receiver.url}]
        h = Harness(loaded_with(tmp_path, sinks), tmp_path)
        notifier = h.start()
        h.rollout("r1", steps=1)
        assert notifier.drain(None, limit_s=20)
        notifier.stop()
        # Given the last delivery's cursor lost (killed after the send, before the save)
        saved = h.outbox()
        last = h.events()[-1]
        saved["sinks"]["log"]["seq"] = last["seq"] - 1
        FileText(h.state_dir).write(json.dumps(saved))
        # When a driver starts again
        again = h.start()
        assert again.drain(None, limit_s=20)
        again.stop()
        # Then it is sent again under the same Idempotency-Key, which the receiver dedupes
        assert receiver.duplicates == [last["id"]]
        assert receiver.accepted == [e["id"] for e in h.events()]


def test_a_first_start_and_a_sink_added_later_begin_at_the_trails_end(tmp_path: Path) -> None:
    with Receiver("webhook", KEY.encode()) as old, Receiver("webhook", KEY.encode()) as new:
        h = Harness(loaded_with(tmp_path, [{"name": "old", "kind": "webhook", "url": old.url}]),
                    tmp_path)  # fmt: skip
        # Given history recorded before any notifier ran
        h.rollout("r0", steps=1)
        notifier = h.start()
        h.rollout("r1", steps=1)
        assert notifier.drain(None, limit_s=20)
        notifier.stop()
        assert old.accepted == [e["id"] for e in h.events() if e["subject"] == "r1"]
        # When a sink is added and a further rollout recorded while no notifier runs
        sinks = [{"name": "old", "kind": "webhook", "url": old.url},
                 {"name": "new", "kind": "webhook", "url": new.url}]  # fmt: skip
        h.rollout("r2", steps=1)
        h.loaded = loaded_with(tmp_path, sinks)
        notifier = h.start()
        h.rollout("r3", steps=1)
        assert notifier.drain(None, limit_s=20)
        notifier.stop()
        # Then the old sink catches up on r2 and r3; the new one starts at r3
        assert old.accepted == [e["id"] for e in h.events() if e["subject"] != "r0"]
        assert new.accepted == [e["id"] for e in h.events() if e["subject"] == "r3"]


def test_dead_letters_after_the_retries_or_at_once_on_a_4xx_are_recorded_once(
    tmp_path: Path,
) -> None:
    with (
        Receiver("webhook", KEY.encode(), down=True) as down,
        Receiver("slack", KEY.encode(), refusing=True) as refusing,
        Receiver("webhook", KEY.encode()) as log,
    ):
        sinks = [
            {"name": "down", "kind": "webhook", "url": down.url, "events": ["rollout.promoted"]},
            {"name": "refusing", "kind": "slack", "url": refusing.url,
             "events": ["rollout.promoted"]},
            {"name": "log", "kind": "webhook", "url": log.url},
        ]  # fmt: skip
        h = Harness(loaded_with(tmp_path, sinks, retries=2), tmp_path)
        notifier = h.start()
        h.rollout("r1", steps=1)
        try:
            assert notifier.drain(h.recorder, limit_s=30)
        finally:
            notifier.stop()
        promoted = h.events("rollout.promoted")[0]
        # Then the 503s were tried 1 + 2 retries times, the 422 once
        assert (down.attempts(), refusing.attempts()) == (3, 1)
        letters = {name: c["dead"] for name, c in h.outbox()["sinks"].items()}
        seen = [(d["event_id"], d["attempts"], d["error"], d["recorded"]) for d in letters["down"]]
        assert seen == [(promoted["id"], 3, "HTTP 503", True)]
        assert letters["refusing"][0]["attempts"] == 1
        # And each is one audit record, an event the log sink received too
        dead = h.events("notification.dead-letter")
        assert sorted(e["data"]["sink"] for e in dead) == ["down", "refusing"]
        assert all(e["data"]["event_id"] == promoted["id"] for e in dead)
        assert log.accepted == [e["id"] for e in h.events()]


def test_the_worst_case_bounds_the_drain() -> None:
    loaded_settings = {"timeout": 5.0, "retries": 3, "backoff": 1.0}
    from swiftdeploy.manifest import Notifications

    # 1 + 2 + 4 s of backoff, 4 attempts of 5 s
    assert worst_case_s(Notifications(**loaded_settings)) == 27.0
