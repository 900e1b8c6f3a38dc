"""Every fuzzing property of the test suite at --examples each, and a table of the bad
inputs tried per surface (manifests, audit files, command lines) and the crashes found;
then hostile /metrics bodies at the scrape's size limit, parsed as a scrape parses them.

    .venv/bin/python bench/fuzz.py [--examples 2000] [--metrics-runs 20]
        [--only surfaces|metrics]

A crash is any outcome other than the documented one (a valid object, a clean
SwiftDeployError, an exit code from the documented list, a verify verdict): Hypothesis
reports it as a failing example, and pytest exits non-zero. The counts are Hypothesis's
own (`--hypothesis-show-statistics`), not the requested number.

The /metrics part (issue 22) parses each body of bench/support/hostile_metrics.py
--metrics-runs times with a fresh parser (a changing body defeats the memo, so this is
a hostile scrape's cost) and with the parser as it was before issue 22, loaded from
git at BEFORE, interleaved run by run; then once more each under tracemalloc for the
peak memory. A body whose outcome is not its shape's (read or refused) fails the bench.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import re
import subprocess
import sys
import time
import tracemalloc
import types
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from bench.support.hostile_metrics import SHAPES  # noqa: E402

from swiftdeploy.errors import MetricsProviderError  # noqa: E402
from swiftdeploy.metrics.exposition import ExpositionParser  # noqa: E402
from swiftdeploy.metrics.scrape import MAX_BYTES  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "fuzz.md"
METRICS_RESULTS = ROOT / "bench" / "results" / "fuzz_metrics.md"
# The last commit whose parser had no caps nor deadline (issue 22's "before").
BEFORE = "46ed993f71998ca974b0546c38c3d4db3aaf23b5"
SCRAPE_DEADLINE_S = 2.0  # ScrapeProvider's default timeout_s
SURFACES = {
    "manifest (mutated manifests, arbitrary text)": (
        "tests/security/test_fuzz.py::test_mutated_manifests_load_or_fail_cleanly",
        "tests/security/test_fuzz.py::test_arbitrary_text_loads_or_fails_cleanly",
    ),
    "measurements -> policy input -> decision": (
        "tests/security/test_fuzz.py::test_policy_inputs_always_build_and_decide",
    ),
    "command lines": (
        "tests/security/test_fuzz.py::"
        "test_any_command_line_exits_with_a_documented_code_and_no_crash",
    ),
    "audit files (mutated trails, random files and heads)": ("tests/audit/test_fuzz_verify.py",),
    "/metrics bodies (random text and lines; one line as new series to 16 MiB)": (
        "tests/security/test_fuzz.py::test_any_metrics_body_is_read_or_refused_cleanly",
        "tests/security/test_fuzz.py::test_a_hostile_metrics_body_at_the_size_limit_is_bounded",
    ),
}
# e.g. "  - during generate phase (0.03 seconds):" ... "    - 20 passing, 0 failing, and
# 0 invalid test cases"
EXAMPLE_COUNTS = re.compile(r"(\d+) passing, (\d+) failing")


def run_surface(tests: tuple[str, ...], examples: int) -> tuple[int, int, int, int, float]:
    """(properties, passing examples, failing examples, pytest exit code, seconds)."""
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--timeout", "7200",
         "--hypothesis-show-statistics", *tests],
        cwd=ROOT,
        env={**os.environ, "FUZZ_EXAMPLES": str(examples)},
        capture_output=True,
        text=True,
        check=False,
    )  # fmt: skip
    counted = [(int(p), int(f)) for p, f in EXAMPLE_COUNTS.findall(done.stdout)]
    if done.returncode != 0 and not any(f for _, f in counted):
        sys.stdout.write(done.stdout[-3000:])
    passing = sum(p for p, _ in counted)
    failing = sum(f for _, f in counted)
    properties = done.stdout.count("during generate phase")
    return properties, passing, failing, done.returncode, time.monotonic() - started


Parse = Callable[[str], str]  # a body -> "read N" or "refused: why"


def parser_before() -> type:
    """The ExpositionParser of BEFORE, as its own module (the caps' "before")."""
    source = subprocess.run(
        ["git", "show", f"{BEFORE}:src/swiftdeploy/metrics/exposition.py"],
        cwd=ROOT, capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    module = types.ModuleType("exposition_before_issue22")
    sys.modules[module.__name__] = module  # dataclasses look their module up
    exec(compile(source, "exposition_before_issue22.py", "exec"), module.__dict__)
    parser: type = module.ExpositionParser
    return parser


def outcome(parse: Callable[[], Any]) -> str:
    try:
        sample = parse()
    except MetricsProviderError as exc:
        parts = exc.message.split(": ")  # "<target>: <kind>: [line N: ]<why>[: <line>]"
        return "refused: " + next((p for p in parts if "over" in p), parts[-1])
    return f"read {len(sample.requests) + len(sample.buckets):,} series"


def parsers() -> dict[str, Parse]:
    before = parser_before()
    return {
        "now": lambda body: outcome(
            lambda: ExpositionParser().parse(
                body, "t", deadline=time.monotonic() + SCRAPE_DEADLINE_S
            )
        ),
        "before": lambda body: outcome(lambda: before().parse(body, "t")),
    }


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p * len(ordered)) - 1)]


def peak_mib(parse: Parse, body: str) -> float:
    tracemalloc.start()
    try:
        parse(body)
        return tracemalloc.get_traced_memory()[1] / 2**20
    finally:
        tracemalloc.stop()


def hostile_metrics(runs: int) -> tuple[list[str], bool]:
    """The table's lines, and whether every body had its shape's outcome now."""
    ways = parsers()
    lines = [
        "| body (each at most 16 MiB) | lines | now | p50 ms | p99 ms | peak MiB "
        "| before issue 22 | p50 ms | p99 ms | peak MiB | p99 before/now |",
        "|---|---:|---|---:|---:|---:|---|---:|---:|---:|---:|",
    ]
    as_expected = True
    for shape in SHAPES:
        print(f"parsing {shape.name} ...", flush=True)
        body = shape.body()
        assert len(body.encode()) <= MAX_BYTES, shape.name
        times: dict[str, list[float]] = {name: [] for name in ways}
        seen: dict[str, str] = {}
        for i in range(runs):
            for name in list(ways)[i % 2 :] + list(ways)[: i % 2]:  # alternate who goes first
                started = time.perf_counter()
                seen[name] = ways[name](body)
                times[name].append((time.perf_counter() - started) * 1000)
        peaks = {name: peak_mib(parse, body) for name, parse in ways.items()}
        as_expected &= seen["now"].startswith("read") == shape.accepted
        p99 = {name: percentile(values, 0.99) for name, values in times.items()}
        cells = [
            f"{seen[name]} | {percentile(times[name], 0.5):.1f} | {p99[name]:.1f} "
            f"| {peaks[name]:.0f}"
            for name in ways
        ]
        lines.append(
            f"| {shape.name} | {body.count(chr(10)):,} | {cells[0]} | {cells[1]} "
            f"| {p99['before'] / p99['now']:.0f}x |"
        )
    return lines, as_expected


def surfaces(examples: int) -> int:
    command = f".venv/bin/python bench/fuzz.py --examples {examples}"
    lines = [
        f"# Fuzzing ({date.today().isoformat()})",
        "",
        f"`{command}` on {platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}.",
        "",
        "| surface | properties | inputs tried | crashes | exit | time |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    worst = 0
    for surface, tests in SURFACES.items():
        print(f"fuzzing {surface} ...", flush=True)
        properties, passing, failing, code, seconds = run_surface(tests, examples)
        lines.append(
            f"| {surface} | {properties} | {passing + failing:,} | {failing} | {code} "
            f"| {seconds:.0f} s |"
        )
        worst = max(worst, code)
    RESULTS.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))
    return worst


def metrics(runs: int) -> int:
    command = f".venv/bin/python bench/fuzz.py --only metrics --metrics-runs {runs}"
    table, as_expected = hostile_metrics(runs)
    lines = [
        f"# Hostile /metrics bodies ({date.today().isoformat()})",
        "",
        f"`{command}` on {platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}, load average {os.getloadavg()[0]:.1f} at the end; "
        f"{runs} parses of each body by each parser, interleaved; a fresh parser each time "
        f"(no memo), with the scrape's {SCRAPE_DEADLINE_S:g} s deadline for today's. "
        "Peak MiB: tracemalloc, one more parse.",
        "",
        *table,
    ]
    METRICS_RESULTS.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))
    return 0 if as_expected else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--examples", type=int, default=2000)
    parser.add_argument("--metrics-runs", type=int, default=20)
    parser.add_argument("--only", choices=("surfaces", "metrics"))
    args = parser.parse_args()
    worst = 0
    if args.only in (None, "surfaces"):
        worst = max(worst, surfaces(args.examples))
    if args.only in (None, "metrics"):
        worst = max(worst, metrics(args.metrics_runs))
    return worst


if __name__ == "__main__":
    sys.exit(main())
