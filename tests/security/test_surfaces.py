"""Control surfaces on loopback only, private files, and secrets kept out of every
output a person or another tool reads."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import yaml
from bench.support.project import Project

from swiftdeploy.runtime.supervisor import ProcessSupervisor
from tests.conftest import canary_ready, finish, start_rollout, wait_for

pytestmark = pytest.mark.e2e

SECRET = "s3cr3t-VALUE-that-must-not-leak"


def _listening(pids: set[int]) -> list[tuple[str, str]]:
    """(local address, process) of every TCP listener owned by one of `pids`."""
    out = subprocess.run(["ss", "-ltnpH"], capture_output=True, text=True, check=True).stdout
    found = []
    for line in out.splitlines():
        fields = line.split()
        local, users = fields[3], " ".join(fields[5:])
        for pid in pids:
            if f"pid={pid}," in users:
                found.append((local, users))
    return found


def _family(pid: int) -> set[int]:
    """A pid and all its descendants."""
    family = {pid}
    children = subprocess.run(
        ["pgrep", "-P", str(pid)], capture_output=True, text=True, check=False
    ).stdout
    for child in children.split():
        family |= _family(int(child))
    return family


@pytest.fixture
def everything_running(project: Project) -> Project:
    manifest = yaml.safe_load(project.manifest.read_text())
    manifest["policy"]["engine"] = "opa"
    manifest["metrics"]["provider"] = "prometheus"
    manifest["service"]["env"] = {"API_KEY": {"value": SECRET, "secret": True}}
    project.manifest.write_text(yaml.safe_dump(manifest))
    project.cli("deploy")
    project.cli("canary", "v2", "--weight", "20")
    return project


def test_every_listener_is_on_loopback(everything_running: Project) -> None:
    project = everything_running
    manager = int((project.state_dir / "supervisord.pid").read_text())
    listeners = _listening(_family(manager))
    names = {p.name for p in ProcessSupervisor(project.state_dir).processes()}
    assert {"nginx", "opa", "prometheus"} <= names
    assert len(listeners) >= 5  # nginx's public listener, prometheus, 3 replicas
    outside = [(addr, who) for addr, who in listeners if not addr.startswith("127.0.0.1:")]
    assert outside == []
    # the control surfaces listen on no TCP port at all: unix sockets in the state dir
    assert not [who for _, who in listeners if '"opa"' in who]
    nginx = [addr for addr, who in listeners if '"nginx"' in who]
    assert set(nginx) == {f"127.0.0.1:{project.listen_port}"}  # one socket per worker


def test_state_files_are_private(everything_running: Project) -> None:
    state_dir = everything_running.state_dir
    assert state_dir.stat().st_mode & 0o777 == 0o700
    for name in ("state.json", "history.jsonl", "chaos.token"):
        assert (state_dir / name).stat().st_mode & 0o777 == 0o600, name
    assert (state_dir / "supervisor.sock").stat().st_mode & 0o777 == 0o700
    assert (state_dir / "opa.sock").stat().st_mode & 0o777 == 0o600


def test_chaos_needs_the_token_and_is_not_public(everything_running: Project) -> None:
    project = everything_running
    replica = next(r for r in project.state()["replicas"] if r["track"] == "canary")
    direct = f"http://127.0.0.1:{replica['port']}/chaos"
    assert httpx.post(direct, json={"error_rate": 1}).status_code == 401
    assert httpx.post(project.url + "/chaos", json={"error_rate": 1}).status_code == 404
    stable = next(r for r in project.state()["replicas"] if r["track"] == "stable")
    manifest = yaml.safe_load(project.manifest.read_text())
    assert manifest["service"]["chaos"] is True
    # a replica started without chaos has no /chaos at all
    manifest["service"]["chaos"] = False
    project.manifest.write_text(yaml.safe_dump(manifest))
    project.cli("rollback")
    project.cli("deploy", "v1b")
    plain = next(r for r in project.state()["replicas"] if r["version"] == "v1b")
    assert httpx.post(f"http://127.0.0.1:{plain['port']}/chaos", json={}).status_code == 404
    assert stable["port"] != plain["port"]


def test_secrets_never_reach_logs_status_audit_or_reports(
    everything_running: Project, tmp_path: Path
) -> None:
    project = everything_running
    # the replica really got it
    replica = next(r for r in project.state()["replicas"] if r["track"] == "canary")
    env = Path(f"/proc/{_pid(project, replica['name'])}/environ").read_bytes()
    assert SECRET.encode() in env
    outputs = [
        project.cli("status", "--json", "--window", "0").stdout,
        project.cli("audit", "export", "--format", "json").stdout,
        project.cli("audit", "why", check=False).stdout,
    ]
    project.cli("audit", "report", "--out", str(tmp_path))
    outputs += [p.read_text() for p in tmp_path.iterdir() if p.is_file()]
    readable = [
        p
        for p in project.state_dir.rglob("*")
        if p.is_file()
        and p.suffix in {".log", ".jsonl", ".json", ".md", ".html", ".conf"}
        and p.parent.name != "supervisor.d"  # the 0600 launch files that hand it to the replica
    ]
    outputs += [p.read_text(errors="replace") for p in readable]
    assert all(SECRET not in text for text in outputs)


def _pid(project: Project, name: str) -> int:
    info = json.loads(project.cli("status", "--json", "--window", "0").stdout)
    return int(next(r["pid"] for r in info["replicas"] if r["name"] == name))


def test_abort_ends_a_rollout_within_10s_whatever_the_canary_does(project: Project) -> None:
    # Given a service whose /metrics drips a byte a second, measured by scraping it
    manifest = yaml.safe_load(project.manifest.read_text())
    manifest["service"]["command"] = [
        sys.executable, "-m", "tests.support.drip", "--port", "{port}", "--version", "{version}",
    ]  # fmt: skip
    manifest["service"]["env"] = {"PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    manifest["service"]["chaos"] = False
    manifest["metrics"]["provider"] = "scrape"
    project.manifest.write_text(yaml.safe_dump(manifest))
    project.cli("deploy")
    rollout = start_rollout(project, "v2")
    try:
        wait_for(lambda: canary_ready(project), what="the canary")
        time.sleep(3)  # a look is under way, stuck in the dripping scrape
        # When a person aborts it
        started = time.monotonic()
        done = project.cli("abort", check=False, timeout=60)
        took = time.monotonic() - started
    finally:
        finish(rollout, timeout=60)
    # Then the canary is rolled back within ten seconds
    assert done.returncode == 0, done.stdout + done.stderr
    assert took < 10, took
    state = project.state()
    assert state["phase"] == "rolled-back"
    assert not [r for r in state["replicas"] if r["track"] == "canary"]
