"""`make demo`: the main job end to end on the embedded defaults, in build/demo/.

Every step is a real `swiftdeploy` command; the project is torn down at the end,
whatever happens.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import httpx

from swiftdeploy.ports import free_port

ROOT = Path(__file__).resolve().parent.parent / "build" / "demo"
SWIFTDEPLOY = str(Path(sys.executable).with_name("swiftdeploy"))


def sd(*args: str) -> None:
    print(f"\n$ swiftdeploy {' '.join(args)}", flush=True)
    subprocess.run([SWIFTDEPLOY, *args], cwd=ROOT, check=True)


def show_split(url: str, requests: int) -> None:
    with httpx.Client(timeout=5) as client:
        versions = Counter(client.get(url).headers["x-app-version"] for _ in range(requests))
    print(f"\n{requests} requests through nginx: " + ", ".join(
        f"{v} {n} ({n / requests:.0%})" for v, n in sorted(versions.items())
    ))  # fmt: skip


def main() -> int:
    if (ROOT / ".swiftdeploy" / "supervisord.pid").exists():
        subprocess.run([SWIFTDEPLOY, "teardown"], cwd=ROOT, check=False)
    shutil.rmtree(ROOT, ignore_errors=True)
    ROOT.mkdir(parents=True)
    listen = f"127.0.0.1:{free_port()}"
    try:
        sd("init", ".", "--listen", listen)
        run_steps(listen)
    except subprocess.CalledProcessError as exc:
        print(f"\ndemo failed: `swiftdeploy {' '.join(exc.cmd[1:])}` exited {exc.returncode}")
        return exc.returncode
    finally:
        sd("teardown")
    print("\ndemo finished: deployed v1, ran v2 as a 20% canary, rolled it back, tore down")
    return 0


def run_steps(listen: str) -> None:
    sd("validate")
    sd("deploy")
    sd("canary", "v2", "--weight", "20")
    show_split(f"http://{listen}/", 1000)
    sd("status")
    sd("rollback")
    show_split(f"http://{listen}/", 200)


if __name__ == "__main__":
    sys.exit(main())
