"""`swiftdeploy policy test | eval | check`: the project's Rego, tested and asked directly."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from swiftdeploy import proc
from swiftdeploy.errors import BadInputError, OperationalError
from swiftdeploy.manifest import LoadedManifest
from swiftdeploy.policy import create_engine
from swiftdeploy.policy.base import PACKAGES, Decision, PolicyEngine
from swiftdeploy.policy.opa import OpaServer, opa_check
from swiftdeploy.tools import find_opa


def policy_dir(loaded: LoadedManifest) -> Path:
    directory = loaded.project_dir / loaded.manifest.policy.directory
    if not directory.is_dir():
        raise BadInputError(
            f"{loaded.where('policy.directory')}: {directory} is not a directory",
            hint="run `swiftdeploy init` to get the shipped policies",
        )
    return directory


def _opa() -> str:
    opa = find_opa()
    if opa is None:
        raise OperationalError(
            "OPA is not installed", hint="run `make setup`, or set SWIFTDEPLOY_OPA"
        )
    return opa


def run_tests(loaded: LoadedManifest) -> tuple[bool, str]:
    """`opa test -v` on the policy directory: (passed, OPA's report)."""
    outcome = proc.run([_opa(), "test", "-v", str(policy_dir(loaded))], timeout=300)
    return outcome.code == 0, (outcome.stdout + outcome.stderr).strip()


def check(loaded: LoadedManifest) -> list[str]:
    """Compile problems, each "file:line: message", from `opa check` (the strict one)."""
    return opa_check(policy_dir(loaded), opa_binary=_opa())


def read_input(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BadInputError(f"{path}: no such file", hint="give a JSON policy input") from None
    except json.JSONDecodeError as exc:
        raise BadInputError(
            f"{path}:{exc.lineno}: not JSON: {exc.msg}", hint="fix the JSON syntax"
        ) from None
    if not isinstance(data, dict):
        raise BadInputError(f"{path}: the input must be a JSON object")
    return data


@contextmanager
def _engine(loaded: LoadedManifest, name: str) -> Iterator[PolicyEngine]:
    directory = policy_dir(loaded)
    policy = loaded.manifest.policy
    if name == "opa" and not policy.opa.url:
        # A throwaway OPA server for this one question; the project's own may not run.
        with OpaServer(directory, opa_binary=_opa()) as url:
            engine = create_engine("opa", directory=directory, url=url, timeout=policy.opa.timeout)
            try:
                yield engine
            finally:
                engine.close()
        return
    engine = create_engine(
        name, directory=directory, url=policy.opa.url, timeout=policy.opa.timeout
    )
    try:
        yield engine
    finally:
        engine.close()


def evaluate(loaded: LoadedManifest, input_path: Path, engine_name: str, package: str) -> Decision:
    if package not in PACKAGES:
        raise BadInputError(
            f"unknown package {package!r}", hint=f"choose one of: {', '.join(PACKAGES)}"
        )
    document = read_input(input_path)
    with _engine(loaded, engine_name) as engine:
        return engine.decide(package, document)
