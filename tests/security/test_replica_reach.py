"""Another local user, played by `nobody`, and the replicas (review 2, finding 4).

A replica listens on a loopback port, which any local user can connect to. What such a
user cannot do: read the port off `ps` (the local runtime gives it in PORT, and the
environment is the owner's alone), or get requests sent that way counted by the default
`nginx` provider, which counts only what the public listener served. The `scrape` and
`prometheus` providers count at the replica, so they count those requests too:
`validate`, `deploy`, `canary` and `rollout` say so.
"""

from __future__ import annotations

import json
import subprocess
import time

import pytest
import yaml
from bench.support.project import Project

from tests.conftest import version_counts

# As `nobody`, with Debian's own python3 (the venv's lives under /root): what `ps -ef`
# shows (every process's argv), and whether the demo replicas' environments can be read.
PS = """
import json, os
seen = []
for pid in filter(str.isdigit, os.listdir("/proc")):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            argv = [a.decode(errors="replace") for a in f.read().split(b"\\0") if a]
    except OSError:
        continue
    environ = None
    if any(a.endswith("swiftdeploy-demo") for a in argv):
        try:
            with open(f"/proc/{pid}/environ", "rb") as f:
                environ = f.read().decode(errors="replace")
        except OSError as exc:
            environ = type(exc).__name__
    seen.append({"argv": argv, "environ": environ})
print(json.dumps(seen))
"""
# As `nobody`: GETs straight to a replica's port; prints how many answered 200.
DIRECT = """
import sys, urllib.request
ok = 0
for _ in range(int(sys.argv[2])):
    with urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/", timeout=5) as r:
        ok += r.status == 200
print(ok)
"""
WARNING = "counts requests at the replicas, and any local user can send requests"


def as_nobody(script: str, *args: str) -> str:
    done = subprocess.run(
        ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups",
         "/usr/bin/python3", "-c", script, *args],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    return done.stdout


def set_provider(project: Project, provider: str) -> None:
    manifest = yaml.safe_load(project.manifest.read_text())
    manifest["metrics"]["provider"] = provider
    project.manifest.write_text(yaml.safe_dump(manifest))


def mentions(argv: list[str], port: int) -> bool:
    return any(a == str(port) or a.endswith((f":{port}", f"={port}")) for a in argv)


@pytest.mark.e2e
def test_another_user_cannot_read_a_replicas_port_from_ps(project: Project) -> None:
    # Given init's project with a canary running
    project.cli("deploy")
    project.cli("canary", "v2", "--weight", "20")
    ports = {r["port"] for r in project.state()["replicas"]}
    assert len(ports) == 3
    # When nobody reads every process's command line, as `ps -ef` does
    seen = json.loads(as_nobody(PS))
    # Then the replicas are there, version and all, but no command line names a port,
    replicas = [p for p in seen if p["environ"] is not None]
    assert any(p["argv"][-2:] == ["--version", "v2"] for p in replicas), replicas
    leaks = [p["argv"] for p in seen for port in ports if mentions(p["argv"], port)]
    assert leaks == []
    # and the environment, which holds it, is the owner's alone
    assert {p["environ"] for p in replicas} == {"PermissionError"}


@pytest.mark.e2e
def test_direct_requests_to_a_replica_are_not_counted_by_default(project: Project) -> None:
    # Given a canary at 20% and the default provider (nginx, at the public listener)
    project.cli("deploy")
    project.cli("canary", "v2", "--weight", "20")
    canary = next(r for r in project.state()["replicas"] if r["track"] == "canary")
    before = canary_requests(project)
    # When nobody, who can find the port in /proc/net/tcp, sends it 100 requests directly
    assert as_nobody(DIRECT, str(canary["port"]), "100").strip() == "100"
    # Then the replica answered them (loopback is open to every local user), but none
    # is evidence, while what the public listener sent it is
    assert canary_requests(project) == before
    served = version_counts(project.url, 50).get("v2", 0)
    assert served > 0
    deadline = time.monotonic() + 20
    while canary_requests(project) != before + served and time.monotonic() < deadline:
        time.sleep(0.2)  # counted when nginx logs the request, just after it answered
    assert canary_requests(project) == before + served


def canary_requests(project: Project) -> int:
    done = project.cli("metrics", "--track", "canary", "--window", "10m", "--json")
    return int(json.loads(done.stdout)["canary"]["requests"])


@pytest.mark.parametrize(
    ("provider", "warned"), [("scrape", True), ("prometheus", True), ("nginx", False)]
)
def test_validate_warns_when_the_replicas_count(
    project: Project, provider: str, warned: bool
) -> None:
    set_provider(project, provider)
    done = project.cli("validate")
    lines = [line for line in done.stderr.splitlines() if WARNING in line]
    if warned:
        assert len(lines) == 1, done.stderr
        assert f"metrics.provider: {provider} counts" in lines[0]
        assert "use metrics.provider: nginx" in lines[0]
    else:
        assert lines == []
    listed = json.loads(project.cli("validate", "--json").stdout)["warnings"]
    assert any(WARNING in line for line in listed) is warned


@pytest.mark.e2e
def test_deploy_says_it_once(project: Project) -> None:
    set_provider(project, "scrape")
    done = project.cli("deploy")
    assert [line for line in done.stderr.splitlines() if WARNING in line] != []
    assert done.stderr.count(WARNING) == 1
