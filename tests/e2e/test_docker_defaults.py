"""`runtime: docker` on `swiftdeploy init`'s defaults at the traffic a small service
has: a container that starts cold is promoted, not rolled back. A module of its own,
so the suite's second worker runs it beside tests/e2e/test_docker.py."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from bench.support.project import Project, new_project, teardown, use_docker

from swiftdeploy.loadgen import LoadRun
from tests.conftest import cold_start
from tests.support.docker import demo_images, engine

pytestmark = pytest.mark.e2e


@pytest.fixture
def deployed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Project]:
    demo_images(engine(), "v1", "v2")
    project = new_project(Path(tmp_path_factory.mktemp("sd", numbered=True)))
    use_docker(project)
    try:
        project.cli("deploy")
        yield project
    finally:
        teardown(project)


@pytest.mark.timeout(600)  # a whole rollout on the defaults at 5 canary req/s: ~5 min
def test_a_container_that_starts_cold_is_promoted_on_the_defaults(deployed: Project) -> None:
    # Given v1 on two containers with init's decision settings, at 50 req/s (5 canary
    # req/s at the first step)
    project = deployed
    # And v2's container 300 ms slower for its first minute, as good as v1 afterwards
    cold_start(project, "300ms/60s")
    load = LoadRun(project.url + "/", seconds=480, connections=5, rate_per_connection=10)
    try:
        # When v2 rolls out
        done = project.cli("rollout", "v2", check=False, timeout=540)
    finally:
        result = load.finish()
    # Then it is promoted: the warm-up was not evidence of a regression
    assert done.returncode == 0, done.stdout + done.stderr
    assert project.state()["stable_version"] == "v2"
    assert "warming up:" in done.stderr  # its heartbeats said so, in plain words
    # And no client saw a failed request
    assert result.failed == 0, result
