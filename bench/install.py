"""What each install costs: venv size and `swiftdeploy --help` time for
`pip install swiftdeploy` (the local runtime), `swiftdeploy[docker]` and
`swiftdeploy[kubernetes]`.

    .venv/bin/python bench/install.py [--runs 11] [--refresh]

First, not measured: the committed tree (`git archive HEAD`, so work in progress in the
checkout is left out) is built into a wheel, and it and every dependency's wheel go into
a wheelhouse (.tools/wheelhouse; pip may fetch from the index here, or take its own
cache; a later run at the same commit reuses the wheelhouse). Then, measured
and offline: three fresh venvs, each installed with `pip install --no-index
--find-links`, and a bare venv for reference. Sizes are the bytes of the venv's files;
`--help` runs --runs times per venv, the three venvs in turn, and the table gives the
median wall time.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WHEELHOUSE = ROOT / ".tools" / "wheelhouse"
RESULTS = Path(__file__).parent / "results" / "install.md"
# The three installs: the extra each adds to `pip install swiftdeploy`.
INSTALLS = {"local": "", "docker": "[docker]", "kubernetes": "[kubernetes]"}
MB = 1_000_000


def run(argv: list[str], cwd: Path | None = None) -> str:
    done = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed:\n{done.stderr.strip()[-2000:]}")
    return done.stdout


def fill_wheelhouse(refresh: bool) -> None:
    """The wheels of HEAD's swiftdeploy and of every dependency of all its extras."""
    pyproject = run(["git", "show", "HEAD:pyproject.toml"], cwd=ROOT)
    stamp = WHEELHOUSE / ".pyproject.sha256"
    digest = hashlib.sha256(pyproject.encode()).hexdigest()
    head = run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT).strip()
    if not refresh and stamp.exists() and stamp.read_text() == f"{digest} {head}":
        return
    shutil.rmtree(WHEELHOUSE, ignore_errors=True)
    WHEELHOUSE.mkdir(parents=True)
    with tempfile.TemporaryDirectory(prefix="sd-src-") as src:
        archive = subprocess.run(
            ["git", "archive", "HEAD"], cwd=ROOT, capture_output=True, check=True
        ).stdout
        subprocess.run(["tar", "-x", "-C", src], input=archive, check=True)
        # the package data's policies/ is a link to the repository's policies/
        run(
            [
                sys.executable,
                "-m",
                "pip",
                "wheel",
                "--quiet",
                "-w",
                str(WHEELHOUSE),
                f"{src}[docker,kubernetes]",
            ]
        )
    stamp.write_text(f"{digest} {head}")


def venv_bytes(venv: Path) -> int:
    total = 0
    for path in venv.rglob("*"):
        if path.is_file() and not path.is_symlink():
            total += path.stat().st_size
    return total


def make_venv(where: Path, extra: str | None) -> tuple[Path, float]:
    """A fresh venv with `swiftdeploy<extra>` from the wheelhouse only; the install's
    seconds. None: a bare venv (pip only)."""
    started = time.perf_counter()
    run([sys.executable, "-m", "venv", str(where)])
    if extra is not None:
        run(
            [
                str(where / "bin" / "python"),
                "-m",
                "pip",
                "install",
                "--quiet",
                "--no-index",
                "--find-links",
                str(WHEELHOUSE),
                f"swiftdeploy{extra}",
            ]
        )
    return where, time.perf_counter() - started


def help_seconds(venv: Path, cwd: Path) -> float:
    argv = [str(venv / "bin" / "swiftdeploy"), "--help"]
    started = time.perf_counter()
    run(argv, cwd=cwd)
    return time.perf_counter() - started


def imports(venv: Path, modules: tuple[str, ...]) -> list[str]:
    """Which of `modules` this venv can import."""
    code = (
        "import importlib.util, sys\n"
        "print(' '.join(m for m in sys.argv[1:] if importlib.util.find_spec(m)))"
    )
    return run([str(venv / "bin" / "python"), "-c", code, *modules]).split()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=11)
    parser.add_argument("--refresh", action="store_true", help="rebuild the wheelhouse")
    args = parser.parse_args()

    fill_wheelhouse(args.refresh)
    with tempfile.TemporaryDirectory(prefix="sd-install-") as tmp:
        base = Path(tmp)
        bare, _ = make_venv(base / "bare", None)
        venvs: dict[str, Path] = {}
        installs: dict[str, float] = {}
        for name, extra in INSTALLS.items():
            venvs[name], installs[name] = make_venv(base / name, extra)
        sizes = {name: venv_bytes(venv) for name, venv in venvs.items()}
        bare_size = venv_bytes(bare)
        clients = {name: imports(venv, ("docker", "kubernetes")) for name, venv in venvs.items()}
        empty = base / "cwd"  # no manifest here: --help reads none anyway
        empty.mkdir()
        for venv in venvs.values():
            help_seconds(venv, empty)  # warm the page cache once
        times: dict[str, list[float]] = {name: [] for name in venvs}
        for _ in range(args.runs):
            for name, venv in venvs.items():
                times[name].append(help_seconds(venv, empty))

    head = run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT).strip()
    lines = [
        f"commit {head}, Python {platform.python_version()}, {os.cpu_count()} cores,"
        f" load {os.getloadavg()[0]:.1f}; --help: median of {args.runs} runs per venv,"
        " the three in turn",
        "",
        "| install | venv MB | over a bare venv MB | clients | install s | --help median s |"
        " --help min-max s |",
        "|---|---:|---:|---|---:|---:|---:|",
    ]
    for name, extra in INSTALLS.items():
        runs = times[name]
        lines.append(
            f"| `pip install swiftdeploy{extra}` | {sizes[name] / MB:.1f}"
            f" | {(sizes[name] - bare_size) / MB:.1f} | {', '.join(clients[name]) or '-'}"
            f" | {installs[name]:.1f} | {statistics.median(runs):.3f}"
            f" | {min(runs):.3f}-{max(runs):.3f} |"
        )
    lines.append(f"\nA bare venv (pip only): {bare_size / MB:.1f} MB.")
    text = "\n".join(lines) + "\n"
    RESULTS.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
