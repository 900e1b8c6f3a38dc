"""The Decision model, input encoding, result parsing and the engine registry."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

from swiftdeploy.errors import BadInputError
from swiftdeploy.manifest import Policy
from swiftdeploy.policy import (
    CANARY,
    INFRASTRUCTURE,
    Decision,
    EmbeddedEngine,
    OpaEngine,
    Reason,
    create_engine,
    engine_from_policy,
    known_engines,
)
from swiftdeploy.policy.base import (
    InvalidInputError,
    canonical_json,
    decision_path,
    fail_closed,
    parse_decision,
)

GOOD = {
    "allow": False,
    "verdict": "rollback",
    "reasons": [{"rule": "max_error_rate", "message": "too many errors"}],
}


def parse(result: object, package: str = CANARY) -> Decision:
    return parse_decision(result, package=package, engine="test", elapsed_ms=1.0)


# --- canonical_json -----------------------------------------------------------------


def test_canonical_json_cuts_floats_to_15_digits() -> None:
    assert json.loads(canonical_json({"a": 0.1 + 0.2, "b": 1 / 3})) == {
        "a": 0.3,
        "b": 0.333333333333333,
    }


def test_canonical_json_keeps_ints_bools_strings_and_unicode() -> None:
    text = canonical_json({"n": 412, "t": True, "z": None, "s": 'é "q"\n', "l": (1, 2)})
    assert json.loads(text) == {"n": 412, "t": True, "z": None, "s": 'é "q"\n', "l": [1, 2]}
    assert "é" in text  # UTF-8, not \u escapes: rego-cpp counts escapes as characters


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_canonical_json_refuses_non_finite_numbers(value: float) -> None:
    with pytest.raises(InvalidInputError, match=r"input\.statistics\.e_value"):
        canonical_json({"statistics": {"e_value": value}})


def test_canonical_json_keeps_numbers_both_engines_can_parse() -> None:
    document = {"a": 5e-324, "b": 2**60, "c": 2.2250738585072014e-308, "d": -1.7976931348623157e308}
    assert canonical_json(document) == '{"a":0,"b":1.15292150460685e+18,"c":0,"d":-1e+300}'


def test_canonical_json_writes_whole_floats_as_integers() -> None:
    # OPA <= 1.19 reads "10.0" as equal to 1 when comparing (opa#9098)
    assert canonical_json({"a": 10.0, "b": 500.0, "c": -0.0, "d": 2.5, "e": 1e20}) == (
        '{"a":10,"b":500,"c":0,"d":2.5,"e":1e+20}'
    )


@pytest.mark.parametrize(
    "document",
    [{1: "x"}, {"a": object()}, {"a": {1, 2}}, {"a": "\ud800"}],
    ids=["int-key", "object", "set", "lone-surrogate"],
)
def test_canonical_json_refuses_what_json_cannot_carry(document: dict[Any, Any]) -> None:
    with pytest.raises(InvalidInputError):
        canonical_json(document)


# --- packages ---------------------------------------------------------------------------


def test_decision_path() -> None:
    assert decision_path("swiftdeploy.canary") == "swiftdeploy/canary/decision"


@pytest.mark.parametrize("package", ["", "Swift.deploy", "a..b", "a/b", "a.b; x", "data.x "])
def test_bad_package_names_are_bad_input(package: str) -> None:
    with pytest.raises(BadInputError, match="not a Rego package"):
        decision_path(package)


# --- parse_decision ------------------------------------------------------------------


def test_parse_a_good_result() -> None:
    decision = parse(GOOD)
    assert (decision.allow, decision.verdict, decision.engine) == (False, "rollback", "test")
    assert decision.reasons == (Reason(rule="max_error_rate", message="too many errors"),)
    assert not decision.failed


def test_undefined_result_fails_closed() -> None:
    for package, verdict in [(CANARY, "hold"), (INFRASTRUCTURE, "rollback")]:
        decision = parse(None, package)
        assert (decision.allow, decision.verdict) == (False, verdict)
        assert decision.reasons[0].rule == "undefined_result"
        assert f"data.{package}.decision is undefined" in decision.reasons[0].message
        assert decision.failed


@pytest.mark.parametrize(
    ("result", "problem"),
    [
        ("yes", "expected an object"),
        ([GOOD], "expected an object"),
        ({"allow": True}, "missing verdict, reasons"),
        (GOOD | {"reasons": "none"}, "reasons is not a list"),
        (GOOD | {"verdict": "maybe"}, "verdict"),
        (GOOD | {"allow": "false"}, "allow"),
        (GOOD | {"allow": 0}, "allow"),
        (GOOD | {"allow": True, "verdict": "hold"}, "allow is True but the verdict is hold"),
        (GOOD | {"reasons": [{"rule": "x"}]}, "reasons.0.message"),
        (GOOD | {"reasons": ["just a string"]}, "reasons.0"),
        (GOOD | {"reasons": [{"rule": "", "message": "m"}]}, "reasons.0.rule"),
    ],
)
def test_malformed_results_fail_closed(result: object, problem: str) -> None:
    decision = parse(result)
    assert decision.allow is False
    assert decision.verdict == "hold"
    assert decision.reasons[0].rule == "malformed_result"
    assert problem in decision.reasons[0].message


def test_reasons_are_sorted_and_extra_keys_ignored() -> None:
    reasons = [
        {"rule": "b", "message": "2", "severity": "high"},
        {"rule": "a", "message": "9"},
        {"rule": "a", "message": "1"},
    ]
    decision = parse(GOOD | {"reasons": reasons})
    assert [(r.rule, r.message) for r in decision.reasons] == [("a", "1"), ("a", "9"), ("b", "2")]


def test_reason_numbers_keep_15_significant_digits() -> None:
    reason = Reason(rule="r", message="m", observed=33.333333333333336, threshold=[0.1 + 0.2])
    assert reason.observed == 33.3333333333333
    assert reason.threshold == [0.3]


def test_allow_requires_promote() -> None:
    with pytest.raises(ValueError, match="allow is True but the verdict is rollback"):
        Decision(allow=True, verdict="rollback", engine="test")


def test_fail_closed_never_allows() -> None:
    for package, verdict in [(CANARY, "hold"), (INFRASTRUCTURE, "rollback"), ("x.y", "rollback")]:
        decision = fail_closed(package, engine="e", rule="engine_error", message="boom")
        assert (decision.allow, decision.verdict) == (False, verdict)
        assert decision.failed


def test_outcome_leaves_out_engine_bookkeeping() -> None:
    decision = parse(GOOD)
    assert decision.outcome() == {
        "allow": False,
        "verdict": "rollback",
        "reasons": [
            {
                "rule": "max_error_rate",
                "message": "too many errors",
                "observed": None,
                "threshold": None,
            }
        ],
    }


# --- the registry ---------------------------------------------------------------------


def test_known_engines() -> None:
    assert known_engines() == ["embedded", "opa"]


def test_unknown_engine_is_bad_input_listing_the_known_ones(tmp_path: Path) -> None:
    with pytest.raises(BadInputError, match="unknown policy engine 'wasm'") as raised:
        create_engine("wasm", directory=tmp_path)
    assert "choose one of: embedded, opa;" in raised.value.one_line()


def test_opa_engine_needs_a_url(tmp_path: Path) -> None:
    with pytest.raises(BadInputError, match="needs the URL"):
        create_engine("opa", directory=tmp_path)


def test_create_each_engine(tmp_path: Path) -> None:
    opa = create_engine("opa", directory=tmp_path, url="http://127.0.0.1:1/", timeout=0.5)
    assert isinstance(opa, OpaEngine)
    assert opa.url == "http://127.0.0.1:1"
    opa.close()
    embedded = create_engine("embedded", directory=tmp_path)
    assert isinstance(embedded, EmbeddedEngine)
    assert embedded.name == "embedded"


def test_engine_from_policy_resolves_the_directory_in_the_project(tmp_path: Path) -> None:
    policy = Policy(engine="embedded", directory="rules")
    engine = engine_from_policy(policy, tmp_path)
    assert isinstance(engine, EmbeddedEngine)
    assert engine.directory == tmp_path / "rules"
