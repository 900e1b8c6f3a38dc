"""Gating hooks from the CLI, on `local` (issue 23): a rollout's driver calls the
project's hooks on loopback receivers; a pre-rollout refusal stops it before the canary
gets traffic, and an approval hook holds it, with `status` saying what it waits for."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
import yaml
from bench.support.project import Project, trail

from swiftdeploy.errors import ExitCode
from tests.conftest import phase_is, wait_for
from tests.support.hook_server import HookServer, hook_server

pytestmark = pytest.mark.e2e


@pytest.fixture
def server() -> Iterator[HookServer]:
    with hook_server() as running:
        yield running


def declare_hooks(project: Project, hooks: list[dict[str, object]]) -> None:
    manifest = yaml.safe_load(project.manifest.read_text())
    manifest["notifications"] = {"signing_key": {"env": "HOOK_KEY"}, "backoff": "50ms"}
    manifest["hooks"] = hooks
    project.manifest.write_text(yaml.safe_dump(manifest))


def test_hooks_gate_a_rollout_from_the_cli(
    rollout_project: Project, server: HookServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = rollout_project
    monkeypatch.setenv("HOOK_KEY", "e2e-signing-key")  # the driver inherits the CLI's env
    # Given a smoke test answering 500 and an approval hook that says no
    server.answer("/smoke", 500, "smoke: 3 of 10 checks failed")
    server.answer("/approve", 403, {"approved": False})
    declare_hooks(
        project,
        [
            {"name": "smoke", "type": "pre-rollout", "url": server.url("/smoke"), "retries": 1},
            {"name": "approve", "type": "confirm-promotion", "url": server.url("/approve")},
        ],
    )
    # When v2 rolls out
    done = project.cli("rollout", "v2", check=False, timeout=180)
    # Then it is rolled back before the canary got any traffic, saying why
    assert done.returncode == ExitCode.DENIED, done.stdout + done.stderr
    assert "pre-rollout hook smoke answered HTTP 500: smoke: 3 of 10" in done.stdout + done.stderr
    records = trail(project)
    first = [r for r in records if r["kind"] == "transition" and r.get("rollout_id")]
    assert max(r["canary_weight"] for r in first) == 0
    assert not [r for r in records if r["kind"] == "decision" and r.get("rollout_id")]
    (hook,) = [r for r in records if r["kind"] == "hook"]
    assert (hook["hook"], hook["result"], hook["status"], hook["attempts"]) == (
        "smoke",
        "refused",
        500,
        2,
    )
    assert server.url("/smoke") not in json.dumps(records)
    # When the smoke test passes and v2 rolls out again, detached
    server.answer("/smoke", 200, {"p99_ms": 12})
    project.cli("rollout", "v2", "--detach")
    # Then its passed last step waits for the approval, and status says so
    wait_for(
        lambda: (project.state().get("awaiting") or {}).get("type") == "confirm-promotion",
        timeout=150,
        what="the last step waiting for confirm-promotion",
    )
    status = json.loads(project.cli("status", "--json").stdout)
    assert status["phase"] == "progressing"
    assert status["awaiting"]["hooks"] == ["approve"]
    assert "waiting for the confirm-promotion hook approve" in status["message"]
    text = project.cli("status").stdout
    assert "step 2 passed; waiting" in text
    assert "for hook approve (confirm-promotion) before promoting: " in text
    # When the hook says yes
    server.answer("/approve", 200, {"approved": True})
    # Then it is promoted
    wait_for(phase_is(project, "promoted"), timeout=60, what="promoted after the approval")
    results = [(r["hook"], r["result"]) for r in trail(project) if r["kind"] == "hook"]
    assert ("approve", "refused") in results
    assert results[-1] == ("approve", "ok")
    # and the trail with its hook records verifies, and `audit why` reads it
    project.cli("audit", "verify")
    assert "promoted" in project.cli("audit", "why").stdout
