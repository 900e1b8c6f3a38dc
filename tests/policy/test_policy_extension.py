"""A user's rule in a new file of a shipped package takes effect in both engines."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from swiftdeploy.policy import (
    CANARY,
    INFRASTRUCTURE,
    EmbeddedEngine,
    OpaEngine,
    OpaServer,
    PolicyEngine,
)

Build = Callable[..., dict[str, Any]]

# The example from docs/policy-guide.md.
P90_RULE = """package swiftdeploy.canary

import data.swiftdeploy.lib

deny contains reason if {
	input.canary.status == "ok"
	lib.number(input.canary.p90_ms) > 300
	reason := {
		"rule": "max_p90_ms",
		"message": concat("", ["canary p90 latency ", lib.ms(input.canary.p90_ms), " > 300 ms"]),
		"observed": input.canary.p90_ms,
		"threshold": 300,
	}
}
"""

WARMUP_RULE = """package swiftdeploy.canary

hold contains {"rule": "warmup", "message": "the first step always runs for 60s"} if {
	input.step.index == 0
	input.step.elapsed_s < 60
}
"""

FREEZE_RULE = """package swiftdeploy.infrastructure

deny contains {"rule": "freeze", "message": "deploys are frozen"} if {
	input.action == "deploy"
}
"""


@pytest.fixture
def engines(policy_copy: Path, opa_binary: str) -> Iterator[Callable[[], list[PolicyEngine]]]:
    """Engines built after the test has written its files into policy_copy."""
    servers: list[OpaServer] = []
    opened: list[PolicyEngine] = []

    def build() -> list[PolicyEngine]:
        server = OpaServer(policy_copy, opa_binary=opa_binary)
        servers.append(server)
        opened.extend([EmbeddedEngine(policy_copy), OpaEngine(server.start())])
        return opened[-2:]

    yield build
    for engine in opened:
        engine.close()
    for server in servers:
        server.stop()


def test_shipped_policies_alone_promote(
    engines: Callable[[], list[PolicyEngine]], canary_input: Build
) -> None:
    for engine in engines():
        assert engine.decide(CANARY, canary_input({"canary": {"p90_ms": 400}})).allow is True


def test_a_deny_rule_in_a_new_file_rolls_back(
    policy_copy: Path, engines: Callable[[], list[PolicyEngine]], canary_input: Build
) -> None:
    (policy_copy / "p90.rego").write_text(P90_RULE)
    for engine in engines():
        slow = engine.decide(CANARY, canary_input({"canary": {"p90_ms": 400}}))
        assert (slow.allow, slow.verdict) == (False, "rollback"), engine.name
        [reason] = slow.reasons
        assert (reason.rule, reason.message) == ("max_p90_ms", "canary p90 latency 400 ms > 300 ms")
        assert (reason.observed, reason.threshold) == (400, 300)
        assert engine.decide(CANARY, canary_input({"canary": {"p90_ms": 300}})).allow is True


def test_a_hold_rule_in_a_new_file_holds_and_reasons_default(
    policy_copy: Path, engines: Callable[[], list[PolicyEngine]], canary_input: Build
) -> None:
    (policy_copy / "warmup.rego").write_text(WARMUP_RULE)
    for engine in engines():
        decision = engine.decide(CANARY, canary_input({"step": {"elapsed_s": 45}}))
        assert decision.verdict == "hold", engine.name
        assert [(r.rule, r.observed) for r in decision.reasons] == [("warmup", None)]
        assert engine.decide(CANARY, canary_input({"step": {"elapsed_s": 65}})).allow is True


def test_an_infrastructure_rule_in_a_subdirectory_refuses(
    policy_copy: Path, engines: Callable[[], list[PolicyEngine]], infra_input: Build
) -> None:
    (policy_copy / "team").mkdir()
    (policy_copy / "team" / "freeze.rego").write_text(FREEZE_RULE)
    for engine in engines():
        decision = engine.decide(INFRASTRUCTURE, infra_input())
        assert (decision.allow, decision.reasons[0].rule) == (False, "freeze"), engine.name
        assert engine.decide(INFRASTRUCTURE, infra_input({"action": "canary"})).allow is True
