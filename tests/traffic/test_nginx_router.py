"""The nginx router, end to end: real nginx with Debian's lua module, real replicas."""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from bench.support.project import Project

from swiftdeploy.errors import BadInputError
from swiftdeploy.loadgen import LoadRun
from swiftdeploy.manifest import load_manifest
from swiftdeploy.traffic.nginx import NginxRouter
from tests.conftest import version_counts

pytestmark = pytest.mark.e2e


@pytest.fixture
def with_canary(deployed: Project) -> Iterator[Project]:
    deployed.cli("canary", "v2", "--weight", "20")
    try:
        yield deployed
    finally:
        deployed.cli("rollback", check=False)


def test_weight_20_sends_20_percent_to_the_canary(with_canary: Project) -> None:
    # Given 2 stable replicas and 1 canary replica at weight 20
    # When 2,000 requests go through nginx
    counts = version_counts(with_canary.url + "/", 2000)
    # Then the canary's share, counted by X-App-Version, is 20% +- 3 points
    share = counts.get("v2", 0) / 2000
    assert 0.17 <= share <= 0.23, counts


def test_header_override(with_canary: Project) -> None:
    assert version_counts(with_canary.url + "/", 200, {"X-Canary": "always"}) == {"v2": 200}
    assert version_counts(with_canary.url + "/", 200, {"X-Canary": "never"}) == {"v1": 200}


def test_chaos_is_not_reachable_through_nginx(with_canary: Project) -> None:
    response = httpx.post(with_canary.url + "/chaos", json={"error_rate": 1})
    assert response.status_code == 404


def test_zero_failed_requests_across_weight_changes_canary_start_and_rollback(
    deployed: Project,
) -> None:
    # Given keepalive load: 32 connections for 20 s (bounded: at most 10 req/s each)
    load = LoadRun(deployed.url + "/", seconds=20, connections=32, rate_per_connection=10)
    try:
        time.sleep(1)
        # When a canary starts, its weight changes 10 times, and it is rolled back
        deployed.cli("canary", "v2", "--weight", "10")
        for weight in (30, 50, 0, 80, 100, 40, 60, 5, 90, 20):
            deployed.cli("weight", str(weight))
            time.sleep(0.5)
        deployed.cli("rollback")
        result = load.wait()
    finally:
        load.stop()
    # Then not one request failed
    assert result.total >= 5000, result
    assert result.failed == 0, result
    assert set(result.statuses) == {200}, result


def test_killed_replica_is_restarted_and_skipped_while_down(deployed: Project) -> None:
    # Given a stable replica under steady traffic
    victim = deployed.state()["replicas"][0]
    endpoint = f"127.0.0.1:{victim['port']}"
    info = json.loads(deployed.cli("status", "--json", "--window", "0").stdout)
    old_pid = next(r["pid"] for r in info["replicas"] if r["name"] == victim["name"])
    access_log = deployed.state_dir / "logs" / "nginx-access.jsonl"
    log_offset = access_log.stat().st_size
    load = LoadRun(deployed.url + "/", seconds=8, connections=8, rate_per_connection=20)
    try:
        time.sleep(1)
        # When it is killed with SIGKILL
        killed_at = time.time()
        os.kill(old_pid, signal.SIGKILL)
        new_pid = _wait_new_pid(deployed, victim["name"], old_pid)
        back_at = _wait_routed_again(deployed, endpoint)
        result = load.wait()
    finally:
        load.stop()
    # (a few requests of its own after it came back: on a busy machine the restart can
    # take most of the load's 8 s)
    version_counts(deployed.url + "/", 20)
    # Then supervisord restarted it, and no request failed
    assert new_pid != old_pid
    assert result.failed == 0, result
    # And only requests in flight at the kill (at most one per connection, including the
    # one that discovered the refusal) tried it before nginx took it out of rotation
    with access_log.open() as log:
        log.seek(log_offset)
        records = [json.loads(line) for line in log]
    tried_while_down = [
        r
        for r in records
        if endpoint in r["upstream"].split(", ")[:-1] and killed_at <= r["ts"] <= back_at
    ]
    assert len(tried_while_down) <= 8, tried_while_down
    # And it serves again once healthy
    assert any(r["upstream"] == endpoint and r["ts"] > back_at for r in records)


def _wait_new_pid(project: Project, name: str, old_pid: int) -> int:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        info = json.loads(project.cli("status", "--json", "--window", "0").stdout)
        replica = next(r for r in info["replicas"] if r["name"] == name)
        if replica["pid"] not in (0, old_pid) and replica["process"] == "RUNNING":
            return int(replica["pid"])
        time.sleep(0.2)
    raise AssertionError(f"{name} was not restarted")


def _wait_routed_again(project: Project, endpoint: str) -> float:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        routes = project.admin_get("/routes").json()
        if endpoint not in (routes.get("down") or []):
            return time.time()
        time.sleep(0.1)
    raise AssertionError(f"{endpoint} never came back")


def test_a_bad_config_never_replaces_the_running_one(short_tmp: Path, project: Project) -> None:
    loaded = load_manifest(project.manifest)
    router = NginxRouter(loaded.manifest, project.state_dir)
    with pytest.raises(BadInputError, match="nginx rejected the rendered config"):
        router.check("events {}\nhttp { this is not nginx; }\n")
    assert not router.config_path.exists()
