"""Policy decision latency: OPA over REST against embedded regopy, side by side.

Starts a local `opa run --server` on a free 127.0.0.1 port, then asks both engines
for the same canary decisions, interleaved (embedded, OPA, embedded, OPA, ...) so
that both see the same machine load. Each latency is one `engine.decide()` call as
the rollout engine makes it: input encoding, evaluation (plus the HTTP round trip
for OPA) and parsing. Prints a markdown table and the command line.

    .venv/bin/python bench/policy_latency.py [--decisions 2000] [--json out.json] [--check]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import regopy

from swiftdeploy.policy import CANARY, EmbeddedEngine, OpaEngine, OpaServer, PolicyEngine

ROOT = Path(__file__).resolve().parents[1]
GOAL_P99_MS = 5.0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    load_before = os.getloadavg()[0]
    rng = random.Random(args.seed)
    inputs = [canary_input(rng) for _ in range(args.decisions)]
    embedded = EmbeddedEngine(args.policies)
    with OpaServer(args.policies, opa_binary=args.opa) as url:
        opa = OpaEngine(url)
        engines: list[PolicyEngine] = [embedded, opa]
        for document in inputs[: args.warmup]:
            for engine in engines:
                engine.decide(CANARY, document)
        samples = measure(engines, inputs)
        opa.close()
    rows = [summary(name, ms) for name, ms in samples.items()]
    load = (load_before, os.getloadavg()[0])
    print(report(rows, args, load))
    if args.json:
        document = {"rows": rows, "load_average": load, "environment": environment(args)}
        args.json.write_text(json.dumps(document, indent=2))
    met = all(row["p99_ms"] < GOAL_P99_MS for row in rows)
    return 1 if args.check and not met else 0


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--decisions", type=int, default=2000)
    parser.add_argument("--warmup", type=int, default=100)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--policies", type=Path, default=ROOT / "policies")
    default_opa = ROOT / ".tools/bin/opa"
    parser.add_argument("--opa", default=str(default_opa) if default_opa.exists() else "opa")
    parser.add_argument("--json", type=Path, help="also write the numbers here")
    parser.add_argument(
        "--check", action="store_true", help="exit 1 when an engine misses p99 < 5 ms"
    )
    return parser.parse_args(argv)


VERDICTS: dict[str, int] = {}


def measure(engines: list[PolicyEngine], inputs: list[dict[str, Any]]) -> dict[str, list[float]]:
    samples: dict[str, list[float]] = {engine.name: [] for engine in engines}
    for index, document in enumerate(inputs):
        # alternate which engine goes first, so neither always gets a warm cache
        order = engines if index % 2 == 0 else engines[::-1]
        for engine in order:
            started = time.perf_counter()
            decision = engine.decide(CANARY, document)
            samples[engine.name].append((time.perf_counter() - started) * 1000)
            if decision.failed:
                raise SystemExit(f"{engine.name} failed: {decision.reasons[0].message}")
        VERDICTS[decision.verdict] = VERDICTS.get(decision.verdict, 0) + 1
    return samples


def summary(name: str, ms: list[float]) -> dict[str, Any]:
    ordered = sorted(ms)
    return {
        "engine": name,
        "decisions": len(ordered),
        "p50_ms": percentile(ordered, 0.50),
        "p99_ms": percentile(ordered, 0.99),
        "max_ms": ordered[-1],
        "mean_ms": statistics.fmean(ordered),
    }


def percentile(ordered: list[float], q: float) -> float:
    """Nearest-rank percentile of sorted samples."""
    rank = max(1, int(-(-q * len(ordered) // 1)))
    return ordered[rank - 1]


def report(rows: list[dict[str, Any]], args: argparse.Namespace, load: tuple[float, float]) -> str:
    lines = [
        f"Policy decision latency, {args.decisions} canary decisions per engine, interleaved"
        f" ({args.warmup} warm-up decisions each not counted)",
        "",
        "| engine | decisions | p50 (ms) | p99 (ms) | max (ms) | p99 < 5 ms |",
        "|---|---:|---:|---:|---:|:---:|",
    ]
    for row in rows:
        lines.append(
            f"| {row['engine']} | {row['decisions']} | {row['p50_ms']:.2f} | {row['p99_ms']:.2f}"
            f" | {row['max_ms']:.2f} | {'yes' if row['p99_ms'] < GOAL_P99_MS else 'NO'} |"
        )
    env = environment(args)
    mix = ", ".join(f"{count} {verdict}" for verdict, count in sorted(VERDICTS.items()))
    lines += [
        "",
        f"Decisions: {mix}.",
        f"Load average (1 min) before {load[0]:.2f}, after {load[1]:.2f}: on a busy machine"
        " the tail measures the scheduler more than the engines.",
        f"Environment: {env['cpu']} ({env['cpus']} CPUs), Python {env['python']},"
        f" {env['opa']}, regopy {env['regopy']}",
        "",
        "Command:",
        "",
        f"    {env['command']}",
    ]
    return "\n".join(lines)


def environment(args: argparse.Namespace) -> dict[str, Any]:
    version = subprocess.run(
        [args.opa, "version"], capture_output=True, text=True, check=False
    ).stdout.splitlines()
    return {
        "cpu": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "opa": (version[0] if version else "OPA ?").replace("Version: ", "OPA "),
        "regopy": regopy.__version__,
        "command": shlex.join([_shortest(sys.executable), *sys.argv]),
    }


def _shortest(path: str) -> str:
    relative = os.path.relpath(path)
    return relative if len(relative) < len(path) else path


def canary_input(rng: random.Random) -> dict[str, Any]:
    """A canary input as a rollout sees them: the numbers vary so nothing can be
    cached; most ticks are inconclusive or fine, about one in six finds harm."""

    def track(requests: int, error_rate: float, p99: float, healthy: bool) -> dict[str, Any]:
        errors = round(requests * error_rate)
        return {
            "status": "ok",
            "detail": "",
            "requests": requests,
            "errors": errors,
            "error_rate": errors / requests,
            "p50_ms": p99 / 8,
            "p90_ms": p99 / 3,
            "p99_ms": p99,
            "healthy": healthy,
        }

    def stat(verdict: str) -> dict[str, Any]:
        return {
            "e_value": rng.lognormvariate(0, 3),
            "p_value": rng.random(),
            "verdict": verdict,
            "effect": rng.uniform(-0.01, 0.05),
            "ci_low": -0.01,
            "ci_high": 0.05,
            "canary_n": rng.randint(50, 2000),
            "canary_events": rng.randint(0, 50),
            "stable_n": rng.randint(200, 8000),
            "stable_events": rng.randint(0, 100),
        }

    bad = rng.random() < 0.05
    verdicts = ["continue"] * 5 + ["no_harm"] * 4 + ["harm"]
    return {
        "thresholds": {
            "max_error_rate": 0.01,
            "max_p99_ms": 500,
            "min_requests": 50,
            "min_disk_free_gb": 1.0,
            "max_load_per_core": 4.0,
            "min_mem_available_pct": 5.0,
        },
        "alpha": 0.01,
        "step": {
            "index": rng.randint(0, 2),
            "weight": rng.choice([10, 50, 100]),
            "elapsed_s": rng.uniform(0, 70),
            "min_duration_s": 10,
            "max_duration_s": 60,
            "on_timeout": "rollback",
        },
        "canary": track(
            rng.randint(20, 2000),
            rng.uniform(0.01, 0.05) if bad else rng.uniform(0, 0.008),
            rng.uniform(500, 900) if bad else rng.uniform(50, 450),
            rng.random() > 0.01,
        ),
        "stable": track(rng.randint(200, 8000), rng.uniform(0, 0.008), rng.uniform(50, 400), True),
        "statistics": {"errors": stat(rng.choice(verdicts)), "latency": stat(rng.choice(verdicts))},
    }


if __name__ == "__main__":
    sys.exit(main())
