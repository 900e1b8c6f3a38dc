"""Shared parts of the fault-injection suite: a rollout under bounded keepalive load,
and the three things every fault test asserts."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager

from bench.support.project import Project

from swiftdeploy.loadgen import LoadResult, LoadRun
from tests.conftest import canary_ready, start_rollout, wait_for


@contextmanager
def under_load(project: Project, seconds: float = 90) -> Iterator[list[LoadResult]]:
    """hey against the service (8 keepalive connections, 80 req/s, at most `seconds`);
    its summary lands in the yielded list when the block ends."""
    load = LoadRun(project.url + "/", seconds=seconds, connections=8, rate_per_connection=10)
    results: list[LoadResult] = []
    try:
        yield results
        results.append(load.finish())
    finally:
        load.stop()


@contextmanager
def rolling_out(
    project: Project, version: str = "v2", *, canary_up: bool = True
) -> Iterator[tuple[subprocess.Popen[str], list[LoadResult]]]:
    """Given the project deployed and under load, a rollout of `version` running (with
    its canary up unless `canary_up` is False): the start of every fault test. A rollout
    the test left running is killed when the block ends."""
    project.cli("deploy")
    with under_load(project) as load:
        rollout = start_rollout(project, version)
        try:
            if canary_up:
                # a canary process starts in seconds; a clean-clone run at load 7 per
                # core took over 30 s to get the driver to start one
                wait_for(lambda: canary_ready(project), timeout=90, what="the canary")
            yield rollout, load
        finally:
            if rollout.poll() is None:
                rollout.kill()
                rollout.communicate()


def assert_chain_verifies(project: Project) -> None:
    done = project.cli("audit", "verify", "--json", check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert json.loads(done.stdout)["ok"] is True
