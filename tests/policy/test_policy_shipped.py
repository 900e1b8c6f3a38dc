"""Both engines against the shipped policies: Given an input, When deciding, Then ..."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

from swiftdeploy.policy import CANARY, INFRASTRUCTURE, PolicyEngine
from tests.support.inputs import counts, harmful, ledger, policy_input

Build = Callable[..., dict[str, Any]]


def rules(decision: Any) -> set[str]:
    return {reason.rule for reason in decision.reasons}


def test_healthy_canary_is_promoted(engine: PolicyEngine, canary_input: Build) -> None:
    decision = engine.decide(CANARY, canary_input())
    assert decision.allow is True
    assert decision.verdict == "promote"
    assert rules(decision) == {"passed"}
    assert decision.engine == engine.name
    assert decision.elapsed_ms > 0


def test_errors_worse_than_stable_roll_back_with_the_counts(engine: PolicyEngine) -> None:
    decision = engine.decide(CANARY, harmful())
    assert decision.allow is False
    assert decision.verdict == "rollback"
    # a 5% canary is also clearly over the 1% limit: both tests are named
    assert rules(decision) == {"errors_harm", "max_error_rate"}
    reason = next(r for r in decision.reasons if r.rule == "errors_harm")
    assert reason.message.startswith(
        "canary errors worse than stable: 21 errors in 412 canary requests, stable 5 in 1650"
    )
    assert reason.message.endswith(
        ">= 100 = 1/alpha (alpha 0.01, a false rollback rate per rollout)"
    )
    assert reason.threshold == 0.01


def test_slow_canary_rolls_back(engine: PolicyEngine) -> None:
    slow = policy_input(ledger(counts(40, slow=40), counts(400, slow=1)))
    decision = engine.decide(CANARY, slow)
    assert decision.verdict == "rollback"
    assert "latency_harm" in rules(decision)
    reason = next(r for r in decision.reasons if r.rule == "latency_harm")
    assert "40 of 40 canary requests slower than 200 ms, stable 1 of 400" in reason.message


def test_both_tracks_above_the_error_limit_roll_back(engine: PolicyEngine) -> None:
    # equal error rates, so only the absolute limit can see it
    both_bad = policy_input(ledger(counts(2000, 60), counts(8000, 240)))
    decision = engine.decide(CANARY, both_bad)
    assert decision.verdict == "rollback"
    assert rules(decision) == {"max_error_rate"}
    assert decision.reasons[0].message.startswith(
        "canary error rate above 1.0% (thresholds.max_error_rate): 60 errors in 2000 requests"
    )


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


def test_no_data_holds(engine: PolicyEngine) -> None:
    empty = policy_input(ledger(counts(0), counts(400)))
    decision = engine.decide(CANARY, empty)
    assert decision.verdict == "hold"
    assert "no_data" in rules(decision)


def test_undecided_step_holds_with_what_it_needs_even_past_max_duration(
    engine: PolicyEngine,
) -> None:
    late = policy_input(ledger(counts(300, 1), counts(1200, 6)), elapsed_s=5000.0)
    decision = engine.decide(CANARY, late)
    assert decision.verdict == "hold"
    assert rules(decision) == {"needs_evidence"}
    assert decision.reasons[0].message.startswith("errors: ")
    assert "more canary requests to catch +1 point with 90% power" in decision.reasons[0].message


def test_missing_field_never_allows(engine: PolicyEngine, canary_input: Build) -> None:
    document = canary_input()
    del document["canary"]["requests"]
    decision = engine.decide(CANARY, document)
    assert decision.allow is False
    assert [r.message for r in decision.input_problems] == [
        "input field canary.requests is missing"
    ]


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
