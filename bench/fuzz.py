"""Every fuzzing property of the test suite at --examples each, and a table of the bad
inputs tried per surface (manifests, audit files, command lines) and the crashes found.

    .venv/bin/python bench/fuzz.py [--examples 2000]

A crash is any outcome other than the documented one (a valid object, a clean
SwiftDeployError, an exit code from the documented list, a verify verdict): Hypothesis
reports it as a failing example, and pytest exits non-zero. The counts are Hypothesis's
own (`--hypothesis-show-statistics`), not the requested number.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "fuzz.md"
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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--examples", type=int, default=2000)
    args = parser.parse_args()
    command = f".venv/bin/python bench/fuzz.py --examples {args.examples}"
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
        properties, passing, failing, code, seconds = run_surface(tests, args.examples)
        lines.append(
            f"| {surface} | {properties} | {passing + failing:,} | {failing} | {code} "
            f"| {seconds:.0f} s |"
        )
        worst = max(worst, code)
    RESULTS.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))
    return worst


if __name__ == "__main__":
    sys.exit(main())
