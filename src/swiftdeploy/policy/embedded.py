"""The embedded engine: Rego evaluated in-process by regopy (rego-cpp).

Compile once, reuse: `Interpreter.query()` compiles every module again on each
call (about 16 ms for the shipped policies on a 2-core runner), while
`Interpreter.build()` compiles once into a Bundle whose plan runs again with a new
input in about 1.7 ms (plus 0.7 ms to parse the input). We build one bundle per
package on first use and keep the interpreter: over 20,000 decisions on one
interpreter the process RSS stayed flat (33.2 MB), so it never needs to be
re-created. A lock serialises calls, because the interpreter holds the current input.

What rego-cpp 1.5.2 does differently from OPA, and how this module copes:
  * `regopy.Input(value)` keeps only 6 significant digits of a float, so the input
    goes in as JSON text (`set_input_term`), made canonical by `canonical_json`.
  * Its compiler is more lenient than OPA's (unsafe variables and unknown functions
    surface only when evaluated), so `check()` also evaluates each shipped package
    once with an empty input; `opa check` remains the strict reference.
  * Evaluation errors come back as an S-expression (or "<error>"), not JSON, so the
    output is read through regopy's C-level functions instead of `regopy.Output`,
    which would raise a JSONDecodeError on them.
  * It prints parse errors to stdout unless the log level is NONE.
  * It can kill the whole process while compiling valid Rego: an uncaught C++
    exception (e.g. "shape `rego-with` has no field `rego-ref`" for some `with`
    forms) ends in std::terminate. So before compiling in-process, the engine
    compiles once in a child Python process (`_preflight.py`, about 0.1 s, once per
    engine); if that child dies, the policies are reported as not compiling
    instead of taking SwiftDeploy down with them.
  * Some builtins are wrong (min/max/sort order numbers as strings, abs() keeps 6
    digits, sprintf("%s") quotes computed strings); docs/policy-guide.md lists
    them, and tests/policy/test_policy_differential.py keeps the shipped policies
    clear of them.

Policies are read once, when the engine is created (as `opa run` reads them once).
"""

from __future__ import annotations

import json
import re
import sys
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import regopy
from regopy import rego_shared

from swiftdeploy import proc
from swiftdeploy.errors import PolicyEngineError
from swiftdeploy.policy.base import (
    COMPILE_ERROR,
    ENGINE_ERROR,
    INVALID_INPUT,
    MALFORMED_RESULT,
    PACKAGES,
    Decision,
    Evaluation,
    InvalidInputError,
    canonical_json,
    decision_path,
)

_ERROR_AT = re.compile(rb"\(error (\d+):")
_ERROR_MESSAGE = re.compile(rb"\(errormsg (\d+):")


def policy_files(directory: Path) -> list[Path]:
    """Every .rego file under the directory, tests (*_test.rego) left out, in a stable order."""
    return sorted(
        path
        for path in directory.rglob("*.rego")
        if path.is_file() and not path.name.endswith("_test.rego")
    )


class EmbeddedEngine:
    """Evaluates the policy directory in-process."""

    name = "embedded"

    def __init__(self, directory: Path, *, preflight: bool = True) -> None:
        self._directory = directory
        self._lock = threading.Lock()
        self._bundles: dict[str, Any] = {}
        self._sources: dict[str, bytes] = {}
        self._interpreter: Any = regopy.Interpreter()
        self._interpreter.log_level = regopy.LogLevel.NONE
        self._problems = preflight_problems(directory) if preflight else []
        if not self._problems:
            self._problems = self._load()

    @property
    def directory(self) -> Path:
        return self._directory

    def decide(self, package: str, input: Mapping[str, Any]) -> Decision:
        call = Evaluation(self.name, package)
        entrypoint = decision_path(package)
        try:
            text = canonical_json(input)
        except InvalidInputError as exc:
            return call.fail(INVALID_INPUT, f"policy input is not valid: {exc}")
        if self._problems:
            return call.fail(COMPILE_ERROR, _compile_message(self._problems))
        with self._lock:
            try:
                bundle = self._bundle(package)
            except regopy.RegoError as exc:
                return call.fail(COMPILE_ERROR, _compile_message(_problems_of(exc, self._sources)))
            try:
                self._interpreter.set_input_term(text)
                ok, output = self._query(bundle, entrypoint)
            except regopy.RegoError as exc:
                return call.fail(
                    ENGINE_ERROR, f"policy evaluation failed: {str(exc).strip()[:300]}"
                )
        return self._read(call, ok, output)

    def check(self) -> list[str]:
        problems = self.compile_problems()
        if problems:
            return problems
        # rego-cpp reports some compile errors only when a rule is evaluated.
        for package in PACKAGES:
            decision = self.decide(package, {})
            if decision.failed:
                problems.append(f"{self._directory}: {decision.reasons[0].message}")
        return problems

    def close(self) -> None:
        """Nothing to release; the interpreter goes with the engine."""

    # --- loading ---------------------------------------------------------------

    def _load(self) -> list[str]:
        if not self._directory.is_dir():
            return [f"{self._directory}: policy directory not found"]
        files = policy_files(self._directory)
        if not files:
            return [f"{self._directory}: no .rego files in the policy directory"]
        problems: list[str] = []
        for path in files:
            try:
                source = path.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                problems.append(f"{path}:1: cannot read: {exc}")
                continue
            self._sources[str(path)] = source.encode("utf-8")
            try:
                self._interpreter.add_module(str(path), source)
            except regopy.RegoError as exc:
                problems.extend(_problems_of(exc, self._sources))
        return problems

    def compile_problems(self) -> list[str]:
        """Problems loading the files or building the shipped packages (no evaluation)."""
        problems = list(self._problems)
        with self._lock:
            for package in PACKAGES if not problems else ():
                try:
                    self._bundle(package)
                except regopy.RegoError as exc:
                    problems.extend(_problems_of(exc, self._sources))
        return problems

    def _bundle(self, package: str) -> Any:
        bundle = self._bundles.get(package)
        if bundle is None:
            bundle = self._interpreter.build(None, [decision_path(package)])
            self._bundles[package] = bundle
        return bundle

    def _query(self, bundle: Any, entrypoint: str) -> tuple[bool, str]:
        output = rego_shared.rego_bundle_query_entrypoint(
            self._interpreter._impl, bundle._impl, entrypoint
        )
        try:
            return bool(rego_shared.rego_output_ok(output)), str(
                rego_shared.rego_output_string(output)
            )
        finally:
            rego_shared.rego_free_output(output)

    # --- reading the output ----------------------------------------------------------

    def _read(self, call: Evaluation, ok: bool, output: str) -> Decision:
        if not ok or output.startswith(("(error", "<error>")):
            detail = _error_messages(output.encode("utf-8")) or ["no detail from the engine"]
            return call.fail(ENGINE_ERROR, f"policy evaluation failed: {'; '.join(detail)}")
        if output.strip() == "undefined":
            return call.decision(None)
        try:
            document = json.loads(output)
        except ValueError:
            message = (
                "policy returned a malformed decision: the engine's output is not JSON "
                f"(starts {output[:80]!r})"
            )
            return call.fail(MALFORMED_RESULT, message)
        expressions = document.get("expressions") if isinstance(document, dict) else None
        return call.decision(
            expressions[0] if isinstance(expressions, list) and expressions else None
        )


def _compile_message(problems: list[str]) -> str:
    shown = "; ".join(problems[:3])
    more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
    return f"policies do not compile: {shown}{more}"


def _problems_of(exc: regopy.RegoError, sources: Mapping[str, bytes]) -> list[str]:
    """rego-cpp errors as "file:line: message"; it reports a file and a byte offset."""
    text = str(exc).encode("utf-8")
    problems = []
    for file, offset, message in _located_errors(text):
        source = sources.get(file)
        line = source[:offset].count(b"\n") + 1 if source is not None else 1
        problems.append(f"{file}:{line}: {message}")
    return problems or [f"rego: {str(exc).strip()}"]


def _located_errors(text: bytes) -> Iterator[tuple[str, int, str]]:
    # (error 14:/p/syntax.rego|23|2 (errormsg 16:this is unclosed) ...): every
    # token is prefixed with its length in bytes, so it is cut exactly.
    for match in _ERROR_AT.finditer(text):
        start = match.end()
        file = text[start : start + int(match.group(1))]
        rest = text[start + len(file) :]
        offset = re.match(rb"\|(\d+)\|", rest)
        messages = _error_messages(rest)
        yield (
            file.decode("utf-8", "replace"),
            int(offset.group(1)) if offset else 0,
            messages[0] if messages else "error",
        )


def _error_messages(text: bytes) -> list[str]:
    out = []
    for match in _ERROR_MESSAGE.finditer(text):
        start = match.end()
        out.append(text[start : start + int(match.group(1))].decode("utf-8", "replace"))
    return out


# --- preflight: compile in a child process first ---------------------------------------

_PREFLIGHT = Path(__file__).with_name("_preflight.py")


def preflight_problems(directory: Path, *, timeout: float = 60.0) -> list[str]:
    """Compile and evaluate once in a child Python process; if it dies, say so."""
    files = policy_files(directory) if directory.is_dir() else []
    if not files:
        return []  # nothing to crash on; _load reports the empty directory
    entrypoints = ",".join(decision_path(package) for package in PACKAGES)
    argv = [sys.executable, str(_PREFLIGHT), entrypoints, *map(str, files)]
    done = proc.run(argv, timeout=timeout, error=PolicyEngineError)
    code, out, err = done.code, done.stdout, done.stderr
    if code == 0 and out.strip().endswith("ok"):
        return []
    last = [line.strip() for line in err.strip().splitlines() if line.strip()][-2:]
    detail = " ".join(last)[:300] or "no output"
    return [
        f"{directory}: the embedded engine (rego-cpp) crashed compiling these policies "
        f"(exit code {code}: {detail}); try `opa check {directory}` or policy.engine opa"
    ]
