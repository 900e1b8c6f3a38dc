"""Both engines against the shipped policies: Given an input, When deciding, Then ..."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

from swiftdeploy.policy import CANARY, INFRASTRUCTURE, PolicyEngine

Build = Callable[..., dict[str, Any]]


def rules(decision: Any) -> set[str]:
    return {reason.rule for reason in decision.reasons}


def test_healthy_canary_is_promoted(engine: PolicyEngine, canary_input: Build) -> None:
    decision = engine.decide(CANARY, canary_input())
    assert decision.allow is True
    assert decision.verdict == "promote"
    assert rules(decision) == {"no_harm"}
    assert decision.engine == engine.name
    assert decision.elapsed_ms > 0


def test_high_error_rate_rolls_back_with_a_readable_message(
    engine: PolicyEngine, canary_input: Build
) -> None:
    decision = engine.decide(CANARY, canary_input({"canary": {"error_rate": 0.051}}))
    assert decision.allow is False
    assert decision.verdict == "rollback"
    [reason] = decision.reasons
    assert reason.rule == "max_error_rate"
    assert reason.message == "canary error rate 5.1% > 1.0% (stable 0.3%; 412 requests)"
    assert (reason.observed, reason.threshold) == (0.051, 0.01)


def test_slow_canary_rolls_back(engine: PolicyEngine, canary_input: Build) -> None:
    decision = engine.decide(CANARY, canary_input({"canary": {"p99_ms": 812.4}}))
    assert decision.verdict == "rollback"
    assert decision.reasons[0].message == (
        "canary p99 latency 812 ms > 500 ms (stable 110 ms; 412 requests)"
    )


def test_statistical_harm_rolls_back_naming_e_value_and_alpha(
    engine: PolicyEngine, canary_input: Build
) -> None:
    decision = engine.decide(
        CANARY,
        canary_input({"statistics": {"errors": {"verdict": "harm", "e_value": 812.0}}}),
    )
    assert decision.verdict == "rollback"
    [reason] = decision.reasons
    assert reason.rule == "errors_harm"
    assert "e-value 812 >= 100 = 1/alpha (alpha 0.01)" in reason.message
    assert (reason.observed, reason.threshold) == (812.0, 0.01)


def test_provider_error_holds_and_names_the_error(
    engine: PolicyEngine, canary_input: Build
) -> None:
    changes = {"canary": {"status": "provider_error", "detail": "prometheus: connection refused"}}
    decision = engine.decide(CANARY, canary_input(changes))
    assert decision.verdict == "hold"
    assert decision.allow is False
    assert decision.reasons[0].message == (
        "canary metrics provider failed: prometheus: connection refused"
    )


def test_no_data_holds_with_not_enough_data(engine: PolicyEngine, canary_input: Build) -> None:
    nothing = dict.fromkeys(["requests", "errors", "error_rate", "p50_ms", "p90_ms", "p99_ms"])
    decision = engine.decide(CANARY, canary_input({"stable": {"status": "no_data", **nothing}}))
    assert decision.verdict == "hold"
    assert [r.rule for r in decision.reasons] == ["no_data"]
    assert decision.reasons[0].message.startswith("not enough data")


def test_inconclusive_step_takes_on_timeout_at_max_duration(
    engine: PolicyEngine, canary_input: Build
) -> None:
    changes = {"step": {"elapsed_s": 61.0}, "statistics": {"latency": {"verdict": "continue"}}}
    decision = engine.decide(CANARY, canary_input(changes))
    assert decision.verdict == "rollback"
    assert rules(decision) == {"timeout", "inconclusive"}


def test_missing_field_never_allows(engine: PolicyEngine, canary_input: Build) -> None:
    document = canary_input()
    del document["canary"]["p99_ms"]
    decision = engine.decide(CANARY, document)
    assert decision.allow is False
    assert [r.message for r in decision.input_problems] == ["input field canary.p99_ms is missing"]


def test_healthy_host_is_allowed(engine: PolicyEngine, infra_input: Build) -> None:
    decision = engine.decide(INFRASTRUCTURE, infra_input())
    assert (decision.allow, decision.verdict) == (True, "promote")
    assert decision.reasons[0].rule == "host_ok"


def test_full_disk_refuses_the_action(engine: PolicyEngine, infra_input: Build) -> None:
    decision = engine.decide(INFRASTRUCTURE, infra_input({"host": {"disk_free_gb": 0.42}}))
    assert (decision.allow, decision.verdict) == (False, "rollback")
    assert decision.reasons[0].message == (
        "only 0.4 GB of disk free for /srv/app/.swiftdeploy, needs 1.0 GB"
    )


def test_every_host_problem_is_reported(engine: PolicyEngine, infra_input: Build) -> None:
    changes = {"host": {"disk_free_gb": 0, "load_per_core": 9.5, "mem_available_pct": 1}}
    decision = engine.decide(INFRASTRUCTURE, infra_input(changes))
    assert rules(decision) == {"min_disk_free_gb", "max_load_per_core", "min_mem_available_pct"}


def test_shipped_policies_have_no_compile_problems(engine: PolicyEngine) -> None:
    assert engine.check() == []


def test_opa_returns_a_decision_id(opa_engine: PolicyEngine, canary_input: Build) -> None:
    decision = opa_engine.decide(CANARY, canary_input())
    assert decision.decision_id is not None
    uuid.UUID(decision.decision_id)


def test_embedded_has_no_decision_id(embedded_engine: PolicyEngine, canary_input: Build) -> None:
    assert embedded_engine.decide(CANARY, canary_input()).decision_id is None


def test_whole_floats_compare_right_in_both_engines(
    engine: PolicyEngine, infra_input: Build
) -> None:
    # OPA 1.10 evaluates `10.0 > 1` as false (opa#9098); canonical_json sends 10.
    changes = {"thresholds": {"max_load_per_core": 1}, "host": {"load_per_core": 10.0}}
    decision = engine.decide(INFRASTRUCTURE, infra_input(changes))
    assert decision.verdict == "rollback"
    assert decision.reasons[0].message == "load 10.00 per core > 1.00 (2 CPUs)"
