"""A project from `swiftdeploy init` in a directory of its own, driven through the real
CLI, and the manifest changes the tests and the benchmarks both make (short steps,
docker, notifications); its trail read back."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import yaml
from bench.support.host import generous_host_gate

from swiftdeploy.audit.looks import expand
from swiftdeploy.commands.demo_image import REPOSITORY
from swiftdeploy.ports import free_port
from swiftdeploy.review.explain import parse_ts

SWIFTDEPLOY = str(Path(sys.executable).with_name("swiftdeploy"))


def run_cli(
    manifest: Path,
    args: tuple[str, ...],
    *,
    check: bool = True,
    timeout: float = 120,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """`swiftdeploy ARGS -f MANIFEST` from the manifest's directory, its output kept;
    with `check`, a non-zero exit is an AssertionError holding both outputs."""
    done = subprocess.run(
        [SWIFTDEPLOY, *args, "-f", str(manifest)],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=manifest.parent,
        env=env,
        check=False,
    )
    if check and done.returncode != 0:
        command = " ".join(args)
        raise AssertionError(
            f"swiftdeploy {command} exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
        )
    return done


@dataclass
class Project:
    """A project directory and the port its router listens on; `cli` runs a command on it."""

    root: Path
    listen_port: int

    @property
    def manifest(self) -> Path:
        return self.root / "swiftdeploy.yaml"

    @property
    def state_dir(self) -> Path:
        return self.root / ".swiftdeploy"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.listen_port}"

    def cli(
        self, *args: str, check: bool = True, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        return run_cli(self.manifest, args, check=check, timeout=timeout)

    def state(self) -> dict[str, Any]:
        return json.loads((self.state_dir / "state.json").read_text())

    def admin_get(self, path: str) -> httpx.Response:
        """GET from nginx's admin server, on its unix socket in the state directory."""
        transport = httpx.HTTPTransport(uds=str(self.state_dir / "nginx" / "admin.sock"))
        with httpx.Client(transport=transport, timeout=5.0) as client:
            return client.get(f"http://nginx{path}")

    def edit_manifest(self, old: str, new: str) -> None:
        text = self.manifest.read_text()
        assert old in text, old
        self.manifest.write_text(text.replace(old, new))


def new_project(root: Path) -> Project:
    """`swiftdeploy init`'s project, with host limits no machine trips (a busy test
    machine must not fail a test that is not about the infrastructure gate)."""
    port = free_port()
    subprocess.run(
        [SWIFTDEPLOY, "init", str(root), "--listen", f"127.0.0.1:{port}"],
        check=True,
        capture_output=True,
    )
    project = Project(root=root, listen_port=port)
    generous_host_gate(project.manifest)
    return project


def teardown(project: Project) -> None:
    if (project.state_dir / "supervisord.pid").exists():
        project.cli("teardown", check=False)


# --- manifest changes ---------------------------------------------------------


def fast_rollout(project: Project, steps: list[dict[str, Any]] | None = None) -> None:
    """Short steps under the rollout's own load, gated by a real OPA server."""
    manifest = yaml.safe_load(project.manifest.read_text())
    canary = manifest["strategy"]["canary"]
    canary["steps"] = steps or [{"weight": 20}, {"weight": 50}]
    canary["analysis"] = {
        "min_duration": "2s",
        "max_duration": "40s",
        "load": {"rps": 300, "concurrency": 10},
        # a new process's first requests are slow (a container's especially): a few
        # seconds of warm-up, as init's minute is for real services
        "warmup": {"time": "4s", "requests": 50},
    }
    manifest["policy"]["engine"] = "opa"
    # a coarser regression to catch than init's +1 point, so a healthy step passes in
    # seconds at 300 req/s
    manifest["policy"]["detect"]["errors"] = "+5%"
    project.manifest.write_text(yaml.safe_dump(manifest))


def tune(project: Project, **analysis: Any) -> None:
    """fast_rollout's manifest with some analysis settings changed."""
    manifest = yaml.safe_load(project.manifest.read_text())
    manifest["strategy"]["canary"]["analysis"].update(analysis)
    project.manifest.write_text(yaml.safe_dump(manifest))


def use_docker(project: Project, replicas: int = 2) -> None:
    """The project's manifest on `runtime: docker`, running the demo image."""
    manifest = yaml.safe_load(project.manifest.read_text())
    manifest["runtime"] = "docker"
    service = manifest["service"]
    del service["command"]
    service["image"] = f"{REPOSITORY}:{{version}}"
    service["replicas"] = replicas
    project.manifest.write_text(yaml.safe_dump(manifest))


def notify(project: Project, sinks: list[dict[str, Any]], **settings: Any) -> None:
    """The driver notifies `sinks`, signed with $SD_SIGNING_KEY; `settings` override."""
    manifest = yaml.safe_load(project.manifest.read_text())
    manifest["notifications"] = {"signing_key": {"env": "SD_SIGNING_KEY"}, "timeout": "500ms",
                                 "retries": 10, "backoff": "50ms", "sinks": sinks,
                                 **settings}  # fmt: skip
    project.manifest.write_text(yaml.safe_dump(manifest))


# --- the trail ---------------------------------------------------------------


def trail(project: Project) -> list[dict[str, Any]]:
    """The project's audit records, oldest first, each look record rebuilt in full
    (audit/looks.py); the live file: tests write less than a rotation's worth."""
    lines = (project.state_dir / "history.jsonl").read_text().splitlines()
    return expand(json.loads(line) for line in lines)


def look_intervals(project: Project) -> list[float]:
    """Seconds between the rollout's consecutive looks, from the trail."""
    looks = [r for r in trail(project) if r["kind"] == "decision" and r.get("action") == "hold"]
    times = [parse_ts(r["ts"]) for r in looks if r.get("rollout_id")]
    return [(b - a).total_seconds() for a, b in itertools.pairwise(times) if a and b]
