"""The fuzzing properties of tests/security/test_fuzz.py at 10,000 examples each.

.venv/bin/python bench/fuzz.py [--examples 10000]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--examples", type=int, default=10_000)
    args = parser.parse_args()
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
         "tests/security/test_fuzz.py", "--timeout", "3600"],
        cwd=ROOT,
        env={**os.environ, "FUZZ_EXAMPLES": str(args.examples)},
        check=False,
    )  # fmt: skip
    print(f"command: .venv/bin/python bench/fuzz.py --examples {args.examples}")
    print(f"{args.examples} examples per property: exit {done.returncode} "
          f"in {time.monotonic() - started:.0f} s")  # fmt: skip
    sys.exit(done.returncode)


if __name__ == "__main__":
    main()
