"""Shared fixtures for the policy tests: a real OPA server, both engines, inputs.

The OPA server is started once per session on a free 127.0.0.1 port and stopped at
the end; tests that need their own policy directory start their own `OpaServer`.
"""

from __future__ import annotations

import copy
import shutil
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from swiftdeploy.policy import EmbeddedEngine, OpaEngine, OpaServer, PolicyEngine
from swiftdeploy.tools import find_opa
from tests.support.inputs import promotable

ROOT = Path(__file__).resolve().parents[2]
POLICIES = ROOT / "policies"

THRESHOLDS: dict[str, Any] = {
    "max_error_rate": 0.01,
    "max_p99_ms": 500,
    "min_disk_free_gb": 1.0,
    "max_load_per_core": 4.0,
    "min_mem_available_pct": 5.0,
}

# A step that has earned promotion, built as the engine builds it; tests change one thing.
CANARY_INPUT: dict[str, Any] = promotable()

INFRA_INPUT: dict[str, Any] = {
    "action": "deploy",
    "thresholds": THRESHOLDS,
    "host": {
        "disk_free_gb": 80.1,
        "load_per_core": 0.4,
        "mem_available_pct": 93.2,
        "cpu_count": 2,
        "state_dir": "/srv/app/.swiftdeploy",
    },
}


def merged(base: Mapping[str, Any], changes: Mapping[str, Any]) -> dict[str, Any]:
    """A deep copy of base with changes merged in, key by key (like Rego's object.union)."""
    out = copy.deepcopy(dict(base))
    for key, value in changes.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = merged(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


@pytest.fixture
def canary_input() -> Callable[..., dict[str, Any]]:
    def build(changes: Mapping[str, Any] | None = None) -> dict[str, Any]:
        return merged(CANARY_INPUT, changes or {})

    return build


@pytest.fixture
def infra_input() -> Callable[..., dict[str, Any]]:
    def build(changes: Mapping[str, Any] | None = None) -> dict[str, Any]:
        return merged(INFRA_INPUT, changes or {})

    return build


@pytest.fixture(scope="session")
def opa_binary() -> str:
    """The OPA the setup installs; its absence is a failure, never a skip."""
    binary = find_opa()
    assert binary is not None, "no opa binary: run `make setup` (or set SWIFTDEPLOY_OPA)"
    return binary


@pytest.fixture(scope="session")
def opa_server(opa_binary: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[OpaServer]:
    log = tmp_path_factory.mktemp("opa") / "opa.log"
    server = OpaServer(POLICIES, opa_binary=opa_binary, log_path=log)
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def opa_engine(opa_server: OpaServer, opa_binary: str) -> Iterator[OpaEngine]:
    engine = OpaEngine(opa_server.url, directory=POLICIES, opa_binary=opa_binary)
    yield engine
    engine.close()


@pytest.fixture(scope="session")
def embedded_engine() -> EmbeddedEngine:
    return EmbeddedEngine(POLICIES)


@pytest.fixture(params=["embedded", "opa"])
def engine(request: pytest.FixtureRequest) -> PolicyEngine:
    """Each test using this runs once per engine, against the shipped policies."""
    fixture = "embedded_engine" if request.param == "embedded" else "opa_engine"
    found: PolicyEngine = request.getfixturevalue(fixture)
    return found


@pytest.fixture
def policy_copy(tmp_path: Path) -> Path:
    """A private copy of the shipped policies (without tests) to add files to."""
    directory = tmp_path / "policies"
    directory.mkdir()
    for path in POLICIES.glob("*.rego"):
        if not path.name.endswith("_test.rego"):
            shutil.copy(path, directory / path.name)
    return directory
