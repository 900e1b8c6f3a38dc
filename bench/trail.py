"""The audit trail one healthy rollout writes on `swiftdeploy init`'s defaults (issue 20).

    .venv/bin/python bench/trail.py [--rates 50,100,200] [--seeds 3] [--out FILE]
        [--before FILE]

Each run drives the real RolloutEngine with the shipped Rego policy (embedded engine)
through the simulated service (bench/support/sim.py), from init's manifest unchanged
(steps 10/25/50, interval auto, min 30 s and max 10 min per step; a step held at
max_duration is resumed at once), a healthy canary (as the stable: 0.5% errors, 20 ms
median), and records through the fleet's real recorder into a real
AuditLog (hashes, MACs, head file, fsync) in a temporary directory, stamped with the
simulated time. Rates are the service's total requests per second; the looks come
every 0.3 to 2 s, as the canary's rate makes them.

Per rate it prints the mean over the seeds of: the trail's bytes and records per
rollout, its looks (each a decision, rebuilt from the looks records that hold several)
and how many decision records are in full, and the bytes per look. `--out` keeps the
numbers as JSON; `--before FILE` (such a file, written by the code before) adds each
rate's bytes as a share of the before's. For the before's numbers run this script
from a checkout of the code before (where every look is a record in full), e.g.:

    git worktree add /tmp/wt-before <commit>
    cp bench/trail.py /tmp/wt-before/bench/
    cd /tmp/wt-before && PYTHONPATH=src /work/main/.venv/bin/python bench/trail.py --out before.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.support.sim import TrackModel, init_manifest, sim_world  # noqa: E402

import swiftdeploy  # noqa: E402
from swiftdeploy.audit.log import AuditLog  # noqa: E402
from swiftdeploy.audit.recorder import AuditRecorder  # noqa: E402
from swiftdeploy.policy import EmbeddedEngine  # noqa: E402
from swiftdeploy.state import Phase  # noqa: E402

try:
    from swiftdeploy.audit.looks import expand, is_look
except ImportError:  # the code before looks records: every look a record in full

    def expand(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return records

    def is_look(record: dict[str, Any]) -> bool:
        return False


def one_rollout(directory: Path, total_rps: float, seed: int) -> dict[str, float]:
    """Bytes, records, looks and full looks of one healthy rollout's trail."""
    loaded = init_manifest(directory / "project")
    world = sim_world(
        loaded, total_rps=total_rps, stable=TrackModel(), canary=TrackModel(), seed=seed
    )
    trail = directory / "trail" / "history.jsonl"
    log = AuditLog(
        trail,
        loaded.manifest.audit.max_bytes * 100,  # one file: no rotation in the count
        command=["swiftdeploy", "rollout", "v2"],
        clock=lambda: datetime.fromtimestamp(world.clock.now, UTC),
    )
    world.fleet.recorder = AuditRecorder(log)
    engine = world.engine(EmbeddedEngine(directory / "project" / "policies"))
    started = world.clock.now
    try:
        state = engine.run(engine.begin("v2"))
        while state.phase == Phase.PAUSED and state.pause_kind == "held":
            state = engine.run(engine.resume_held(state))  # as a person would, at once
    finally:
        engine.close()  # writes the looks held back
    if state.phase != Phase.PROMOTED:
        raise SystemExit(f"the healthy rollout at {total_rps} req/s ended {state.phase}")
    lines = trail.read_bytes().splitlines(keepends=True)
    records = [json.loads(line) for line in lines]
    decisions = [r for r in records if r["kind"] == "decision"]
    return {
        "bytes": sum(len(line) for line in lines),
        "records": len(lines),
        "looks": sum(1 for r in expand(records) if r["kind"] == "decision"),
        "full": sum(1 for r in decisions if not is_look(r)),
        "seconds": world.clock.now - started,
    }


def measure(rates: list[float], seeds: int) -> dict[str, dict[str, float]]:
    results: dict[str, dict[str, float]] = {}
    for rate in rates:
        runs = []
        for seed in range(1, seeds + 1):
            with tempfile.TemporaryDirectory(prefix="sd-trail-") as directory:
                os.environ["SWIFTDEPLOY_CONFIG_HOME"] = str(Path(directory) / "config")
                runs.append(one_rollout(Path(directory), rate, seed))
        results[f"{rate:g}"] = {key: statistics.mean(run[key] for run in runs) for key in runs[0]}
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rates", default="50,100,200", help="total req/s, comma-separated")
    parser.add_argument("--seeds", type=int, default=3, help="rollouts per rate")
    parser.add_argument("--out", type=Path, help="write the numbers here as JSON")
    parser.add_argument("--before", type=Path, help="the code before's --out, to compare")
    args = parser.parse_args()
    rates = [float(rate) for rate in args.rates.split(",")]
    results = measure(rates, args.seeds)
    before = json.loads(args.before.read_text()) if args.before else {}
    print(f"swiftdeploy from {Path(swiftdeploy.__file__).parent}; {args.seeds} rollout(s) a rate")
    print("req/s | rollout s | bytes/rollout | records | looks (full) | bytes/look | of before")
    for rate, r in results.items():
        share = f"{r['bytes'] / before[rate]['bytes']:.3f}" if rate in before else "-"
        print(
            f"{rate} | {r['seconds']:.0f} | {r['bytes']:,.0f} | {r['records']:.0f} | "
            f"{r['looks']:.0f} ({r['full']:.0f}) | {r['bytes'] / r['looks']:,.0f} | {share}"
        )
    if args.out:
        args.out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
