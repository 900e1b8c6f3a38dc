"""`set_chaos(fleet, ...)` on loopback: each replica of a track told, with the project's
token, to fail or slow its requests, and to recover; the request is in the trail; what
it cannot do is bad input before any replica is asked."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from bench.support.project import Project
from bench.support.sim import init_manifest

from swiftdeploy.commands.audit import settings
from swiftdeploy.commands.chaos import set_chaos
from swiftdeploy.commands.context import CommandContext, command_context
from swiftdeploy.errors import BadInputError
from swiftdeploy.manifest import load_manifest
from swiftdeploy.state import Track


@pytest.fixture
def context(deployed: Project) -> Iterator[CommandContext]:
    with command_context(load_manifest(deployed.manifest), lambda _: None) as opened:
        yield opened


def statuses(project: Project, requests: int) -> set[int]:
    with httpx.Client(timeout=5) as client:
        return {client.get(project.url).status_code for _ in range(requests)}


def chaos_records(project: Project) -> list[dict[str, object]]:
    trail = settings(load_manifest(project.manifest)).path
    found = (json.loads(line) for line in trail.read_text().splitlines())
    return [record for record in found if record["kind"] == "chaos"]


def test_every_stable_replica_fails_then_recovers(
    deployed: Project, context: CommandContext
) -> None:
    told = set_chaos(context.fleet, "stable", 1.0, None, None, recover=False)
    assert sorted(told) == sorted(r["name"] for r in deployed.state()["replicas"])
    assert statuses(deployed, 10) == {500}
    assert set_chaos(context.fleet, "stable", None, None, None, recover=True) == told
    assert statuses(deployed, 10) == {200}
    asked, recovered = chaos_records(deployed)[-2:]
    assert (asked["error_rate"], asked["recover"]) == (1.0, False)
    assert (recovered["error_rate"], recovered["recover"]) == (None, True)


@pytest.mark.parametrize(
    ("track", "error_rate", "latency_ms", "said"),
    [
        ("stable", None, None, "give --error-rate and/or --latency-ms, or --recover"),
        ("stable", 1.5, None, "--error-rate 1.5 is outside 0-1"),
        ("stable", None, -1.0, "--latency-ms cannot be negative"),
        ("canary", 0.5, None, "no canary replicas are running"),
    ],
)
def test_what_cannot_be_done_asks_no_replica(
    deployed: Project,
    context: CommandContext,
    track: Track,
    error_rate: float | None,
    latency_ms: float | None,
    said: str,
) -> None:
    before = len(chaos_records(deployed))
    with pytest.raises(BadInputError) as refused:
        set_chaos(context.fleet, track, error_rate, latency_ms, None, recover=False)
    assert refused.value.message == said
    assert len(chaos_records(deployed)) == before
    assert statuses(deployed, 4) == {200}


def test_a_service_without_chaos_is_refused_with_its_line(short_tmp: Path) -> None:
    loaded = init_manifest(short_tmp, **{"service.chaos": False})
    with (
        command_context(loaded, lambda _: None) as context,
        pytest.raises(BadInputError) as refused,
    ):
        set_chaos(context.fleet, "stable", 0.5, None, None, recover=False)
    line = loaded.lines["service.chaos"]
    assert refused.value.message.startswith(
        f"{loaded.path}:{line}: service.chaos: chaos is not enabled"
    )
