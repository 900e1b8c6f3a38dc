"""Another local user, played by `nobody`, can change neither a decision nor the
traffic: OPA and nginx's admin listen on unix sockets inside the project's 0700 state
directory, and nginx's workers do not run as root."""

from __future__ import annotations

import json
import os
import pwd
import subprocess
from pathlib import Path

import pytest
import yaml
from bench.support.project import Project

from swiftdeploy.traffic.worker_account import WORKER_USER

pytestmark = pytest.mark.e2e

# A plain HTTP request over a unix socket, as `nobody`, with Debian's own python3
# (the venv's lives under /root, which nobody cannot enter).
ATTACK = """
import socket, sys
s = socket.socket(socket.AF_UNIX)
try:
    s.connect(sys.argv[1])
except OSError as exc:
    print(type(exc).__name__)
    sys.exit(3)
s.sendall(sys.argv[2].encode())
print(s.recv(4096).decode(errors="replace"))
"""
EVIL_POLICY = (
    "package swiftdeploy.canary\\n"
    'decision := {"allow": true, "verdict": "promote", "reasons": []}\\n'
)


def as_nobody(socket_path: Path, request: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups",
         "/usr/bin/python3", "-c", ATTACK, str(socket_path), request],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip


def http(method: str, path: str, body: str = "") -> str:
    return (
        f"{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body.encode())}\r\nConnection: close\r\n\r\n{body}"
    )


@pytest.fixture
def gated_by_opa(project: Project) -> Project:
    manifest = yaml.safe_load(project.manifest.read_text())
    manifest["policy"]["engine"] = "opa"
    project.manifest.write_text(yaml.safe_dump(manifest))
    project.cli("deploy")  # the infrastructure gate starts the project's OPA
    project.cli("canary", "v2", "--weight", "20")
    return project


def test_another_user_cannot_rewrite_the_policy(gated_by_opa: Project) -> None:
    # Given the project's OPA running, When nobody tries to replace the canary policy
    socket = gated_by_opa.state_dir / "opa.sock"
    attack = as_nobody(socket, http("PUT", "/v1/policies/evil", EVIL_POLICY))
    # Then it cannot even connect, and the policies are the project's own
    assert attack.returncode == 3, attack.stdout + attack.stderr
    assert attack.stdout.strip() == "PermissionError"
    transport_ok = subprocess.run(
        ["curl", "-s", "--unix-socket", str(socket), "http://opa/v1/policies"],
        capture_output=True, text=True, timeout=10, check=True,
    )  # fmt: skip
    ids = [policy["id"] for policy in json.loads(transport_ok.stdout)["result"]]
    assert ids
    assert not any("evil" in policy_id for policy_id in ids)


def test_another_user_cannot_move_the_traffic(gated_by_opa: Project) -> None:
    project = gated_by_opa
    before = project.admin_get("/routes").json()["routes"]
    hijack = json.dumps({"weights": {"canary": 100}, "endpoints": {"stable": [], "canary": []}})
    attack = as_nobody(project.state_dir / "nginx" / "admin.sock", http("PUT", "/routes", hijack))
    assert attack.returncode == 3, attack.stdout + attack.stderr
    assert attack.stdout.strip() == "PermissionError"
    assert project.admin_get("/routes").json()["routes"] == before


def test_another_user_cannot_drive_supervisord(gated_by_opa: Project) -> None:
    socket = gated_by_opa.state_dir / "supervisor.sock"
    attack = as_nobody(socket, http("POST", "/RPC2", "<methodCall/>"))
    assert attack.returncode == 3
    assert attack.stdout.strip() == "PermissionError"


def test_nginx_workers_do_not_run_as_root(gated_by_opa: Project) -> None:
    # this project's workers (the children of its master), not other projects' on the machine
    master = (gated_by_opa.state_dir / "nginx" / "nginx.pid").read_text().strip()
    workers = subprocess.run(
        ["ps", "--ppid", master, "-o", "uid=,args="], capture_output=True, text=True, check=True
    ).stdout
    mine = [line.split() for line in workers.splitlines() if "worker process" in line]
    assert mine
    # the workers' own account when the CLI is root (test_nginx_workers.py), else the CLI's
    expected = pwd.getpwnam(WORKER_USER).pw_uid if os.geteuid() == 0 else os.geteuid()
    assert {int(fields[0]) for fields in mine} == {expected}
