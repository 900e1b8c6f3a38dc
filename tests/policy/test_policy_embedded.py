"""The embedded engine (regopy): compile once, reuse, and fail closed."""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from swiftdeploy.policy import CANARY, INFRASTRUCTURE, EmbeddedEngine
from swiftdeploy.policy.embedded import policy_files

Build = Callable[..., dict[str, Any]]


def write(directory: Path, name: str, source: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_text(source, encoding="utf-8")
    return path


def test_policy_files_skip_tests_and_recurse(tmp_path: Path) -> None:
    write(tmp_path, "b.rego", "package b\n")
    write(tmp_path, "a_test.rego", "package a_test\n")
    write(tmp_path / "sub", "c.rego", "package c\n")
    assert [p.relative_to(tmp_path).as_posix() for p in policy_files(tmp_path)] == [
        "b.rego",
        "sub/c.rego",
    ]


def test_compile_error_fails_closed_with_file_and_line(tmp_path: Path) -> None:
    bad = write(
        tmp_path, "broken.rego", 'package swiftdeploy.canary\n\n# é\ndecision := {\n  "a":\n'
    )
    engine = EmbeddedEngine(tmp_path)
    assert engine.check()[0] == f"{bad}:4: this is unclosed"
    for package, verdict in [(CANARY, "hold"), (INFRASTRUCTURE, "rollback")]:
        decision = engine.decide(package, {})
        assert (decision.allow, decision.verdict) == (False, verdict)
        assert decision.reasons[0].rule == "compile_error"
        assert decision.reasons[0].message.startswith(f"policies do not compile: {bad}:4:")


def test_a_crash_in_rego_cpp_is_a_compile_error_not_a_dead_process(policy_copy: Path) -> None:
    # rego-cpp 1.5.2 aborts the process (std::terminate: "shape `rego-localref` has no
    # field `rego-refhead`") compiling this valid Rego next to the shipped policies;
    # found while running our *_test.rego files on it. The preflight child takes the hit.
    write(
        policy_copy,
        "helpers.rego",
        "package swiftdeploy.helpers\n\nimport data.swiftdeploy.infrastructure\n\n"
        "decide(doc) := decision if {\n"
        "\tdecision := infrastructure.decision with input as doc\n}\n",
    )
    engine = EmbeddedEngine(policy_copy)
    decision = engine.decide(CANARY, {})
    assert (decision.allow, decision.verdict) == (False, "hold")
    assert decision.reasons[0].rule == "compile_error"
    assert "crashed compiling" in decision.reasons[0].message
    assert "crashed compiling" in engine.check()[0]


def test_missing_package_is_an_undefined_result(policy_copy: Path, canary_input: Build) -> None:
    (policy_copy / "canary.rego").unlink()
    engine = EmbeddedEngine(policy_copy)
    decision = engine.decide(CANARY, canary_input())
    assert (decision.allow, decision.verdict) == (False, "hold")
    assert decision.reasons[0].rule == "undefined_result"
    assert any("data.swiftdeploy.canary.decision is undefined" in p for p in engine.check())


@pytest.mark.parametrize(
    ("source", "problem"),
    [
        ('decision := "yes"', "expected an object"),
        ('decision := {"allow": true}', "missing verdict, reasons"),
        ('decision := {"allow": true, "verdict": "hold", "reasons": []}', "allow is True"),
    ],
)
def test_malformed_result_fails_closed(tmp_path: Path, source: str, problem: str) -> None:
    write(tmp_path, "p.rego", f"package swiftdeploy.infrastructure\n\n{source}\n")
    decision = EmbeddedEngine(tmp_path).decide(INFRASTRUCTURE, {})
    assert (decision.allow, decision.verdict) == (False, "rollback")
    assert decision.reasons[0].rule == "malformed_result"
    assert problem in decision.reasons[0].message


def test_evaluation_error_fails_closed_and_the_engine_keeps_working(tmp_path: Path) -> None:
    write(
        tmp_path,
        "p.rego",
        "package swiftdeploy.infrastructure\n\n"
        'decision := {"allow": true, "verdict": "promote", "reasons": []} if input.a\n\n'
        'decision := {"allow": false, "verdict": "rollback", "reasons": []} if input.b\n',
    )
    engine = EmbeddedEngine(tmp_path)
    conflict = engine.decide(INFRASTRUCTURE, {"a": True, "b": True})
    assert (conflict.allow, conflict.reasons[0].rule) == (False, "engine_error")
    assert engine.decide(INFRASTRUCTURE, {"a": True}).allow is True
    assert engine.decide(INFRASTRUCTURE, {"b": True}).verdict == "rollback"


def test_unknown_function_is_an_engine_error(tmp_path: Path) -> None:
    # rego-cpp compiles this; it fails only when evaluated (OPA refuses it at compile time)
    write(tmp_path, "p.rego", "package swiftdeploy.infrastructure\n\ndecision := nope(1)\n")
    engine = EmbeddedEngine(tmp_path)
    decision = engine.decide(INFRASTRUCTURE, {})
    assert decision.reasons[0].rule == "engine_error"
    assert "Function not found: nope" in decision.reasons[0].message
    assert any("Function not found" in problem for problem in engine.check())


@pytest.mark.parametrize("where", ["missing", "empty"])
def test_no_policies_fail_closed(tmp_path: Path, where: str) -> None:
    directory = tmp_path / "policies"
    if where == "empty":
        directory.mkdir()
    decision = EmbeddedEngine(directory).decide(INFRASTRUCTURE, {})
    assert (decision.allow, decision.reasons[0].rule) == (False, "compile_error")


def test_non_json_input_fails_closed(embedded_engine: EmbeddedEngine, canary_input: Build) -> None:
    decision = embedded_engine.decide(
        CANARY, canary_input({"statistics": {"errors": {"e_value": math.inf}}})
    )
    assert (decision.allow, decision.verdict) == (False, "hold")
    assert decision.reasons[0].rule == "invalid_input"
    assert "input.statistics.errors.e_value is inf" in decision.reasons[0].message


def test_full_float_precision_reaches_the_policy(
    embedded_engine: EmbeddedEngine, canary_input: Build
) -> None:
    # regopy.Input() would round 100.0001 to 100 (6 digits): below 1/alpha, no rollback.
    changes = {
        "statistics": {
            "harm": {"e_value": 100.0001, "verdict": "harm"},
            "errors": {"verdict": "harm", "e_value": 166.66685},
        }
    }
    decision = embedded_engine.decide(CANARY, canary_input(changes))
    assert decision.verdict == "rollback"
    assert decision.reasons[0].observed == 166.66685
    assert "evidence of harm 100.0001" not in decision.reasons[0].message  # shown as an int


def test_the_compiled_bundle_is_reused_with_fresh_input(
    embedded_engine: EmbeddedEngine, canary_input: Build
) -> None:
    good, bad = canary_input(), canary_input({"canary": {"healthy": False}})
    verdicts = [embedded_engine.decide(CANARY, doc).verdict for doc in [good, bad] * 50]
    assert verdicts == ["promote", "rollback"] * 50


def test_concurrent_decisions_do_not_mix_inputs(
    embedded_engine: EmbeddedEngine, canary_input: Build
) -> None:
    inputs = {"promote": canary_input(), "rollback": canary_input({"canary": {"healthy": False}})}
    wrong: list[str] = []

    def work(expected: str) -> None:
        for _ in range(40):
            verdict = embedded_engine.decide(CANARY, inputs[expected]).verdict
            if verdict != expected:
                wrong.append(verdict)

    threads = [threading.Thread(target=work, args=(v,)) for v in ["promote", "rollback"] * 2]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert wrong == []
