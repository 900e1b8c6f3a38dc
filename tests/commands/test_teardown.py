"""`teardown(fleet)` on loopback: what `deploy(fleet, ...)` started (replicas, nginx,
the supervisor) answers, then is stopped and forgotten."""

from __future__ import annotations

import httpx
import pytest
from bench.support.project import Project

from swiftdeploy.commands.context import command_context
from swiftdeploy.commands.deploy import deploy
from swiftdeploy.commands.teardown import teardown
from swiftdeploy.manifest import load_manifest
from swiftdeploy.proc import pid_alive
from swiftdeploy.state import State
from tests.conftest import wait_for


def test_what_deploy_started_is_stopped_and_forgotten(project: Project) -> None:
    loaded = load_manifest(project.manifest)
    said: list[str] = []
    with command_context(loaded, said.append, lock=True) as context:
        state = deploy(context.fleet, "v1")
    assert [(r.track, r.version, r.ready) for r in state.replicas] == [("stable", "v1", True)] * 2
    answer = httpx.get(project.url, timeout=5)
    assert answer.headers["x-app-version"] == "v1"
    with command_context(loaded, said.append, lock=True) as context:
        stopped = teardown(context.fleet)
    assert stopped  # the supervisor's processes, by pid
    wait_for(lambda: not any(pid_alive(pid) for pid in stopped), 30, "the processes to exit")
    forgotten = State.model_validate(project.state())
    assert (forgotten.replicas, forgotten.stable_version) == ((), None)
    with pytest.raises(httpx.ConnectError):
        httpx.get(project.url, timeout=5)
