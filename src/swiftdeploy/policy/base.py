"""The policy engine interface, its Decision, and what both engines share.

Both engines (OPA over REST, embedded regopy) evaluate the same Rego packages with
the same input (docs/policy-input.md). Everything that must be identical between
them lives here: input encoding, result parsing and failing closed.
"""

from __future__ import annotations

import json
import math
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    JsonValue,
    StrictBool,
    StrictStr,
    ValidationError,
    field_validator,
    model_validator,
)

from swiftdeploy.errors import BadInputError

INFRASTRUCTURE = "swiftdeploy.infrastructure"
# Seconds an engine may take to decide before the gate fails closed.
DEFAULT_TIMEOUT = 2.0
CANARY = "swiftdeploy.canary"
PACKAGES = (INFRASTRUCTURE, CANARY)

Verdict = Literal["promote", "hold", "rollback"]

# Rules of the reasons an engine makes up itself when it cannot give a real decision.
ENGINE_UNREACHABLE = "engine_unreachable"
ENGINE_ERROR = "engine_error"
UNDEFINED_RESULT = "undefined_result"
MALFORMED_RESULT = "malformed_result"
COMPILE_ERROR = "compile_error"
INVALID_INPUT = "invalid_input"
FAILURE_RULES = frozenset(
    {
        ENGINE_UNREACHABLE,
        ENGINE_ERROR,
        UNDEFINED_RESULT,
        MALFORMED_RESULT,
        COMPILE_ERROR,
        INVALID_INPUT,
    }
)
# Rules of the shipped policies' input-contract check (policies/lib.rego).
CONTRACT_RULES = frozenset({"missing_field", "invalid_field"})

# 15 significant digits: every decimal of this length survives a round trip
# through a double, which is what the embedded engine (rego-cpp) stores.
SIGNIFICANT_DIGITS = 15
_PACKAGE = re.compile(r"^[a-z_][a-z0-9_]*(\.[a-z_][a-z0-9_]*)*$")
_MAX_EXACT_INT = 2**53
# rego-cpp cannot parse subnormal numbers, and 15 digits of the largest doubles
# round up to infinity; no real measurement comes near either end.
_TINY = 1e-300
_HUGE = 1e300


class Reason(BaseModel):
    """Why a decision came out as it did; `rule` names the rule, `message` is for humans."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    rule: StrictStr = Field(min_length=1)
    message: StrictStr
    observed: JsonValue = None
    threshold: JsonValue = None

    @field_validator("observed", "threshold")
    @classmethod
    def _same_digits(cls, value: JsonValue) -> JsonValue:
        # The engines print floats differently past 15 digits (OPA keeps the input's
        # text or computes with 64-bit big floats, rego-cpp prints "%.16g"), so a
        # computed value such as 1/alpha is kept to the precision the input had.
        return _round_floats(value)

    def sort_key(self) -> tuple[str, str, str, str]:
        return (
            self.rule,
            self.message,
            json.dumps(self.observed, sort_keys=True),
            json.dumps(self.threshold, sort_keys=True),
        )


class Decision(BaseModel):
    """A policy decision; `allow` is true exactly when the verdict is promote."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    allow: StrictBool
    verdict: Verdict
    reasons: tuple[Reason, ...] = ()
    engine: str
    decision_id: str | None = None
    elapsed_ms: float = Field(default=0.0, ge=0)

    @field_validator("reasons")
    @classmethod
    def _sorted(cls, reasons: tuple[Reason, ...]) -> tuple[Reason, ...]:
        # Rego sets have no order, and the two engines iterate them differently.
        return tuple(sorted(reasons, key=Reason.sort_key))

    @model_validator(mode="after")
    def _allow_only_on_promote(self) -> Decision:
        if self.allow != (self.verdict == "promote"):
            raise ValueError(f"allow is {self.allow} but the verdict is {self.verdict}")
        return self

    @property
    def failed(self) -> bool:
        """True when the engine could not decide and this is a fail-closed stand-in."""
        return any(reason.rule in FAILURE_RULES for reason in self.reasons)

    @property
    def input_problems(self) -> tuple[Reason, ...]:
        """Reasons from the input-contract rule: fields the caller did not send right."""
        return tuple(r for r in self.reasons if r.rule in CONTRACT_RULES)

    def outcome(self) -> dict[str, Any]:
        """The policy's answer without engine bookkeeping, for comparing engines."""
        return self.model_dump(mode="json", exclude={"engine", "decision_id", "elapsed_ms"})


class PolicyEngine(Protocol):
    """Evaluates `data.<package>.decision` for an input. Never raises for policy or
    engine failures: those come back as a fail-closed Decision that does not allow."""

    @property
    def name(self) -> str: ...

    def decide(self, package: str, input: Mapping[str, Any]) -> Decision: ...

    def check(self) -> list[str]:
        """Compile problems of the policy directory, each "file:line: message"."""
        ...

    def close(self) -> None: ...


class InvalidInputError(ValueError):
    """The policy input cannot be encoded as JSON both engines read the same way."""


def validate_package(package: str) -> str:
    if not _PACKAGE.match(package):
        raise BadInputError(
            f"{package!r} is not a Rego package name",
            hint="use dotted lowercase names such as swiftdeploy.canary",
        )
    return package


def decision_path(package: str) -> str:
    """`swiftdeploy.canary` -> `swiftdeploy/canary/decision` (OPA REST and regopy entrypoints)."""
    return "/".join([*validate_package(package).split("."), "decision"])


def canonical_json(document: Mapping[str, Any]) -> str:
    """The input as JSON text, identical for both engines.

    Floats are cut to 15 significant digits, because rego-cpp parses numbers into
    doubles (and compares them at about 16 digits) while OPA compares the decimal
    text exactly; with 15 digits both see the same value. NaN and infinity are
    refused (JSON has no such numbers); magnitudes below 1e-300 become 0
    (rego-cpp cannot parse subnormal numbers) and above 1e300 become 1e300;
    integers past 2**53 become floats.

    Whole floats are written as integers (10.0 -> 10): OPA up to 1.19 compares a
    number written "10.0" as equal to 1 (its NumberCompare trims ".0" as a cutset,
    open-policy-agent/opa#9098), so `10.0 > 1` is false there. Rego does not tell
    10 and 10.0 apart, so nothing else changes.
    """
    value = _canonical(document, "input")
    try:
        return json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    except (TypeError, ValueError) as exc:  # pragma: no cover - _canonical checked types
        raise InvalidInputError(str(exc)) from None


def _canonical(value: object, where: str) -> JsonValue:
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, str):
        if any(0xD800 <= ord(ch) <= 0xDFFF for ch in value):
            raise InvalidInputError(f"{where} is not valid Unicode (a lone surrogate)")
        return value
    if isinstance(value, int):
        return value if abs(value) <= _MAX_EXACT_INT else _canonical(float(value), where)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise InvalidInputError(f"{where} is {value}, which JSON cannot carry")
        if abs(value) < _TINY:
            return 0
        rounded = math.copysign(min(abs(float(f"{value:.{SIGNIFICANT_DIGITS}g}")), _HUGE), value)
        return int(rounded) if rounded.is_integer() and abs(rounded) <= _MAX_EXACT_INT else rounded
    if isinstance(value, Mapping):
        out: dict[str, JsonValue] = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise InvalidInputError(f"{where} has a non-string key {key!r}")
            out[key] = _canonical(item, f"{where}.{key}")
        return out
    if isinstance(value, list | tuple):
        return [_canonical(item, f"{where}[{i}]") for i, item in enumerate(value)]
    raise InvalidInputError(f"{where} is a {type(value).__name__}, which JSON cannot carry")


def _round_floats(value: JsonValue) -> JsonValue:
    if isinstance(value, float) and math.isfinite(value):
        return float(f"{value:.{SIGNIFICANT_DIGITS}g}")
    if isinstance(value, list):
        return [_round_floats(item) for item in value]
    if isinstance(value, dict):
        return {key: _round_floats(item) for key, item in value.items()}
    return value


def ms_since(started: float) -> float:
    """Milliseconds elapsed since a `time.perf_counter()` reading."""
    return (time.perf_counter() - started) * 1000


def fail_closed(
    package: str,
    *,
    engine: str,
    rule: str,
    message: str,
    elapsed_ms: float = 0.0,
    decision_id: str | None = None,
) -> Decision:
    """A Decision that never allows: hold for the canary gate (keep the step running
    and let its time limit decide), rollback (refuse the action) for everything else."""
    return Decision(
        allow=False,
        verdict="hold" if package == CANARY else "rollback",
        reasons=(Reason(rule=rule, message=message),),
        engine=engine,
        decision_id=decision_id,
        elapsed_ms=max(elapsed_ms, 0.0),
    )


@dataclass(frozen=True)
class Evaluation:
    """One `decide` call of an engine: its answer or failure carries the engine's name,
    the package and the milliseconds since the call began."""

    engine: str
    package: str
    started: float = field(default_factory=time.perf_counter)

    def fail(self, rule: str, message: str) -> Decision:
        return fail_closed(
            self.package,
            engine=self.engine,
            rule=rule,
            message=message,
            elapsed_ms=ms_since(self.started),
        )

    def decision(self, result: object, decision_id: str | None = None) -> Decision:
        return parse_decision(
            result,
            package=self.package,
            engine=self.engine,
            elapsed_ms=ms_since(self.started),
            decision_id=decision_id,
        )


def parse_decision(
    result: object,
    *,
    package: str,
    engine: str,
    elapsed_ms: float,
    decision_id: str | None = None,
) -> Decision:
    """Turn the value of `data.<package>.decision` into a Decision, failing closed."""
    if result is None:
        return fail_closed(
            package,
            engine=engine,
            rule=UNDEFINED_RESULT,
            message=(
                f"policy engine returned no decision: data.{package}.decision is undefined "
                "(is the package in the policy directory?)"
            ),
            elapsed_ms=elapsed_ms,
            decision_id=decision_id,
        )
    problem = _malformed(result)
    if problem is None and isinstance(result, dict):
        try:
            return Decision(
                allow=result["allow"],
                verdict=result["verdict"],
                reasons=result["reasons"],
                engine=engine,
                decision_id=decision_id,
                elapsed_ms=elapsed_ms,
            )
        except ValidationError as exc:
            problem = _first_error(exc)
    return fail_closed(
        package,
        engine=engine,
        rule=MALFORMED_RESULT,
        message=f"policy returned a malformed decision: {problem}",
        elapsed_ms=elapsed_ms,
        decision_id=decision_id,
    )


def _malformed(result: object) -> str | None:
    if not isinstance(result, dict):
        return f"expected an object with allow, verdict and reasons, got {type(result).__name__}"
    missing = [key for key in ("allow", "verdict", "reasons") if key not in result]
    if missing:
        return f"missing {', '.join(missing)}"
    if not isinstance(result["reasons"], list):
        return "reasons is not a list"
    return None


def _first_error(exc: ValidationError) -> str:
    error = exc.errors()[0]
    where = ".".join(str(part) for part in error["loc"])
    return f"{where}: {error['msg']}" if where else str(error["msg"])
