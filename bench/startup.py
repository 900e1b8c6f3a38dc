"""How long the CLI takes to answer: `--help`, `validate`, and `status` without rates
on a running project, now and at an earlier commit, interleaved run by run.

    .venv/bin/python bench/startup.py [--runs 10] [--before 062290f]

The earlier commit is checked out into a temporary git worktree and run with the same
interpreter and venv (its `src/` first on PYTHONPATH), so only the code differs. Each
version has its own project (its own init's manifest, v1 deployed), both running at
once. Each command runs --runs times per version, alternating versions, and the table
gives the median wall time.
"""

from __future__ import annotations

import argparse
import os
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.support.host import generous_host_gate  # noqa: E402

from swiftdeploy.ports import free_port  # noqa: E402

RESULTS = Path(__file__).parent / "results" / "startup.md"
TARGETS = {"--help": 0.3, "validate": 1.0, "status": 1.0}


def cli() -> list[str]:
    """The CLI of whichever `src/` PYTHONPATH names, on this venv's interpreter."""
    return [sys.executable, "-c", "from swiftdeploy.cli import main; main()"]


def env_for(src: Path) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(src)}


def run(swiftdeploy: list[str], args: list[str], env: dict[str, str], cwd: Path) -> None:
    subprocess.run([*swiftdeploy, *args], env=env, cwd=cwd, check=True, capture_output=True)


def timed(argv: list[str], env: dict[str, str], cwd: Path) -> float:
    started = time.perf_counter()
    done = subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True, check=False)
    took = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{shlex.join(argv)} failed: {done.stderr.strip()[-300:]}")
    return took


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--before", default="062290f", help="the earlier commit to compare")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="sd-startup-"))
    before_tree = work / "before"
    subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(before_tree),
                    args.before], check=True, capture_output=True)  # fmt: skip
    now_env, before_env = env_for(ROOT / "src"), env_for(before_tree / "src")
    swiftdeploy = cli()
    projects = {"now": work / "now", "before": work / "before-project"}
    envs = {"now": now_env, "before": before_env}
    # the earlier CLI spelt "status without rates" --sample 0
    commands = {
        "--help": {"now": ["--help"], "before": ["--help"]},
        "validate": {"now": ["validate"], "before": ["validate"]},
        "status": {"now": ["status", "--window", "0"], "before": ["status", "--sample", "0"]},
    }
    times: dict[tuple[str, str], list[float]] = {}
    try:
        for version, project in projects.items():
            listen = f"127.0.0.1:{free_port()}"
            run(swiftdeploy, ["init", str(project), "--listen", listen], envs[version], work)
            generous_host_gate(project / "swiftdeploy.yaml")  # a busy machine: no refusal
            run(swiftdeploy, ["deploy"], envs[version], project)
        for _ in range(args.runs):
            for name, per_version in commands.items():
                for version in ("before", "now"):
                    argv = [*swiftdeploy, *per_version[version]]
                    took = timed(argv, envs[version], projects[version])
                    times.setdefault((name, version), []).append(took)
    finally:
        for version, project in projects.items():
            subprocess.run([*swiftdeploy, "teardown"], env=envs[version], cwd=project,
                           capture_output=True, check=False)  # fmt: skip
        subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force",
                        str(before_tree)], capture_output=True, check=False)  # fmt: skip
    rows = [
        f"# CLI start-up ({time.strftime('%Y-%m-%d')})",
        "",
        f"`python bench/startup.py {shlex.join(sys.argv[1:])}` on {platform.machine()}, "
        f"{os.cpu_count()} cores, Python {platform.python_version()}; median of {args.runs} "
        f"runs each, versions interleaved; before = commit {args.before}.",
        "",
        "| command | before | now | speed-up | target | met |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for name, target in TARGETS.items():
        before = statistics.median(times[(name, "before")])
        now = statistics.median(times[(name, "now")])
        met = "yes" if now <= target else "**no**"
        rows.append(
            f"| `{name}` | {before:.2f} s | {now:.2f} s | {before / now:.1f}x | "
            f"<= {target:g} s | {met} |"
        )
    text = "\n".join(rows) + "\n"
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
