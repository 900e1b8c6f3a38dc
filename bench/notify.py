"""Notifications (issue 23): how fast and how surely the driver's events reach receivers.

1. Delivery: a real trail (AuditLog) written at a steady pace, the driver's Notifier
   delivering to loopback receivers (bench/support/receivers.py): a healthy one, and
   one that fails 30% of deliveries with 500 and hangs past the 1 s timeout on 10%
   (seeded). Event-to-delivery = the receiver's acceptance minus the record's time;
   exactly once = events accepted once / events recorded (duplicates counted apart).
2. Looks: two local projects side by side through the CLI, steps that keep looking at a
   1 s interval; one notifies a receiver that hangs on every delivery (2 s timeout), the
   other has no sink. The intervals between their looks, read from their trails.

    .venv/bin/python bench/notify.py [--events 200] [--looks 20]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.support.project import (  # noqa: E402
    Project,
    fast_rollout,
    look_intervals,
    new_project,
    notify,
    teardown,
    tune,
)
from bench.support.receivers import Receiver  # noqa: E402
from bench.support.sim import init_manifest  # noqa: E402

from swiftdeploy.audit.log import AuditLog  # noqa: E402
from swiftdeploy.audit.recorder import AuditRecorder  # noqa: E402
from swiftdeploy.notify.deliver import Notifier  # noqa: E402
from swiftdeploy.notify.outbox import FileText, OutboxStore  # noqa: E402
from swiftdeploy.notify.secrets import resolve_secrets  # noqa: E402

KEY = "bench-signing-key-0123456789abcdef"


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def delivery(events: int, fail: float, hang: float, pace_s: float) -> dict[str, Any]:
    with (
        tempfile.TemporaryDirectory(prefix="sd-bench-") as tmp,
        Receiver("webhook", KEY.encode(), fail=fail, hang=hang, hang_s=1.5, seed=23) as receiver,
    ):
        directory = Path(tmp)
        sinks = [{"name": "log", "kind": "webhook", "url": receiver.url}]
        settings = {"signing_key": {"env": "K"}, "timeout": "1s", "retries": 10,
                    "backoff": "100ms", "sinks": sinks}  # fmt: skip
        loaded = init_manifest(directory / "p", notifications=settings)
        trail = directory / "history.jsonl"
        recorder = AuditRecorder(AuditLog(trail, 10**8, command=["bench"]))
        notifier = Notifier(loaded.manifest, trail, OutboxStore(FileText(directory)),
                            resolve_secrets(loaded, {"K": KEY}), lambda line: None)  # fmt: skip
        notifier.start()
        written: dict[int, float] = {}
        for n in range(events):
            recorder.record("driver", event="started", pid=n + 1, restarts=0, rollout_id="r")
            written[n + 1] = time.time()
            time.sleep(pace_s)
        started = time.monotonic()
        caught_up = notifier.drain(None, limit_s=600)
        drained_s = time.monotonic() - started
        notifier.stop()
        seqs = {key: int(body["seq"]) for key, body in receiver.bodies.items()}
        delays = [receiver.accepted_at[k] - written[seqs[k]] for k in receiver.accepted]
        return {
            "events": events,
            "delivered_once_pct": 100.0 * len(set(receiver.accepted)) / events,
            "duplicates": len(receiver.duplicates),
            "attempts": receiver.attempts(),
            "p50_ms": 1000 * statistics.median(delays),
            "p95_ms": 1000 * pct(delays, 0.95),
            "caught_up": caught_up,
            "drain_s": drained_s,
        }


def looks(count: int) -> dict[str, Any]:
    """The look intervals of two projects side by side, one with a hanging receiver."""
    os.environ["SD_SIGNING_KEY"] = KEY
    projects = [new_project(Path(tempfile.mkdtemp(prefix="sd-", dir="/tmp"))) for _ in range(2)]
    hanging, quiet = projects
    try:
        with Receiver("webhook", KEY.encode(), hang=1.0, hang_s=5.0) as receiver:
            for project in projects:
                fast_rollout(project)
                tune(project, min_duration="10m", max_duration="20m", interval="1s")
            notify(hanging, [{"name": "log", "kind": "webhook", "url": receiver.url}],
                   timeout="2s")  # fmt: skip

            def roll(project: Project) -> None:
                project.cli("deploy")
                project.cli("rollout", "v2", "--detach")

            threads = [threading.Thread(target=roll, args=(p,)) for p in projects]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(300)
            deadline = time.monotonic() + 600
            while (
                time.monotonic() < deadline
                and min(len(look_intervals(p)) for p in projects) < count
            ):
                time.sleep(1)
            for project in projects:
                project.cli("abort")
            attempts = receiver.attempts()
        out: dict[str, Any] = {"hanging_attempts": attempts}
        for name, project in (("hanging", hanging), ("none", quiet)):
            gaps = look_intervals(project)[:count]
            out[name] = {"looks": len(gaps), "median_s": statistics.median(gaps),
                         "p95_s": pct(gaps, 0.95), "max_s": max(gaps)}  # fmt: skip
        return out
    finally:
        for project in projects:
            teardown(project)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=200)
    parser.add_argument("--looks", type=int, default=20, help="0: no look comparison")
    parser.add_argument("--pace", type=float, default=0.02, help="seconds between records")
    args = parser.parse_args()
    print(f"# {datetime.now().isoformat(timespec='seconds')}: bench/notify.py "
          f"--events {args.events} --looks {args.looks} --pace {args.pace}")  # fmt: skip
    for label, fail, hang in (("healthy", 0.0, 0.0), ("30% 500, 10% hang", 0.3, 0.1)):
        r = delivery(args.events, fail, hang, args.pace)
        print(f"{label}: {r['delivered_once_pct']:.1f}% delivered once of {r['events']}, "
              f"{r['duplicates']} duplicates, {r['attempts']} attempts; event-to-delivery "
              f"p50 {r['p50_ms']:.0f} ms, p95 {r['p95_ms']:.0f} ms; drained in "
              f"{r['drain_s']:.1f}s after the last record")  # fmt: skip
    if not args.looks:
        return
    looked = looks(args.looks)
    for name in ("none", "hanging"):
        x = looked[name]
        print(f"look interval, receiver {name}: median {x['median_s']:.3f}s, p95 "
              f"{x['p95_s']:.3f}s, max {x['max_s']:.3f}s over {x['looks']} intervals")  # fmt: skip
    print(f"(the hanging receiver was tried {looked['hanging_attempts']} times meanwhile)")


if __name__ == "__main__":
    main()
