"""The infrastructure gate on init's default limits, with the host's facts injected:
what it allows and refuses never depends on the machine running the test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from bench.support.host import GENEROUS_HOST_THRESHOLDS, generous_host_gate

from swiftdeploy.commands import gate
from swiftdeploy.commands.init import init_project
from swiftdeploy.errors import PolicyDeniedError
from swiftdeploy.hostfacts import HostFacts
from swiftdeploy.manifest import LoadedManifest, Thresholds, load_manifest
from swiftdeploy.policy import PolicyEngine, engine_from_policy

# A quiet host: init's limits pass it with room to spare.
QUIET = HostFacts(
    disk_free_gb=80.0, load_per_core=0.4, mem_available_pct=60.0, cpu_count=2, state_dir="/x"
)


class Trail:
    def __init__(self) -> None:
        self.records: list[tuple[str, dict[str, Any]]] = []

    def record(self, kind: str, **fields: Any) -> None:
        self.records.append((kind, fields))


@pytest.fixture
def loaded(tmp_path: Path) -> LoadedManifest:
    """init's manifest, its host limits untouched (the product's defaults)."""
    init_project(tmp_path, "127.0.0.1:18080", force=False)
    found = load_manifest(tmp_path / "swiftdeploy.yaml")
    assert found.manifest.policy.thresholds == Thresholds()
    return found


@pytest.fixture
def engine(loaded: LoadedManifest) -> Iterator[PolicyEngine]:
    policy = engine_from_policy(loaded.manifest.policy, loaded.project_dir)
    try:
        yield policy
    finally:
        policy.close()


def seen(monkeypatch: pytest.MonkeyPatch, **facts: Any) -> None:
    """The gate sees QUIET with `facts` changed, whatever this machine's state."""
    host = QUIET.model_copy(update=facts)
    monkeypatch.setattr(gate, "measure_host", lambda state_dir: host)


def test_a_quiet_host_passes_and_the_decision_is_recorded(
    loaded: LoadedManifest, engine: PolicyEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen(monkeypatch)
    trail = Trail()
    decision = gate.infrastructure_gate(loaded, engine, trail, "deploy")
    assert decision.allow
    [(kind, fields)] = trail.records
    assert (kind, fields["action"]) == ("decision", "deploy")
    assert fields["decision"]["input"]["host"]["load_per_core"] == 0.4


def test_a_load_just_above_the_limit_refuses_naming_load_and_limit(
    loaded: LoadedManifest, engine: PolicyEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the refusal a busy CI machine once gave, now made on purpose
    seen(monkeypatch, load_per_core=4.004)
    trail = Trail()
    with pytest.raises(PolicyDeniedError) as refused:
        gate.infrastructure_gate(loaded, engine, trail, "deploy")
    message = str(refused.value)
    assert "infrastructure policy denied deploy: load 4.004 per core > 4" in message
    assert "disk" not in message
    assert "memory" not in message
    [(kind, fields)] = trail.records
    assert (kind, fields["action"]) == ("decision", "denied")


def test_a_load_at_the_limit_passes(
    loaded: LoadedManifest, engine: PolicyEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen(monkeypatch, load_per_core=4.0)
    assert gate.infrastructure_gate(loaded, engine, Trail(), "canary").allow


@pytest.mark.parametrize(
    ("facts", "words"),
    [
        ({"disk_free_gb": 0.5}, "GB of disk free"),
        ({"mem_available_pct": 2.0}, "of memory available, needs"),
    ],
)
def test_little_disk_or_memory_refuses(
    loaded: LoadedManifest,
    engine: PolicyEngine,
    monkeypatch: pytest.MonkeyPatch,
    facts: dict[str, float],
    words: str,
) -> None:
    seen(monkeypatch, **facts)
    with pytest.raises(PolicyDeniedError, match=words):
        gate.infrastructure_gate(loaded, engine, Trail(), "canary")


def test_test_projects_limits_pass_a_host_at_its_worst(
    loaded: LoadedManifest, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given init's manifest with the limits every test project gets (bench/support/host.py)
    before = loaded.path.read_text().splitlines()
    generous_host_gate(loaded.path)
    after = loaded.path.read_text().splitlines()
    # Then only the three host limits changed, comments and line numbers kept
    changed = [(old, new) for old, new in zip(before, after, strict=True) if old != new]
    assert [new.split(":")[0].strip() for _, new in changed] == list(GENEROUS_HOST_THRESHOLDS)
    assert "# the host, checked before deploy" in changed[0][1]
    relaxed = load_manifest(loaded.path)
    assert relaxed.manifest.policy.thresholds == Thresholds(**GENEROUS_HOST_THRESHOLDS)
    # And a machine as busy and full as any gets through
    seen(monkeypatch, disk_free_gb=0.0, load_per_core=999.0, mem_available_pct=0.0)
    policy = engine_from_policy(relaxed.manifest.policy, relaxed.project_dir)
    try:
        assert gate.infrastructure_gate(relaxed, policy, Trail(), "deploy").allow
    finally:
        policy.close()
