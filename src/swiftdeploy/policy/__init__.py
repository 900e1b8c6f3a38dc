"""Policy engines: OPA over REST and embedded Rego (regopy), behind one interface.
May import: state, manifest and the foundation; not another part.

`create_engine(name, ...)` is the only way the rest of SwiftDeploy gets an engine. An
engine is made by a factory `(EngineDeps) -> PolicyEngine`; a third party registers one
under the entry point group `swiftdeploy.policy_engines`. An unknown name is a
BadInputError that lists the known ones (no silent fallback).
The engines' modules (regopy, httpx) load when first used, not with this package:
importing `swiftdeploy.policy.base` for a Decision must not cost a command its
start-up time.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from swiftdeploy.errors import BadInputError
from swiftdeploy.manifest import Policy
from swiftdeploy.policy.base import (
    CANARY,
    DEFAULT_TIMEOUT,
    INFRASTRUCTURE,
    PACKAGES,
    Decision,
    PolicyEngine,
    Reason,
    Verdict,
)
from swiftdeploy.registry import Registry

if TYPE_CHECKING:
    from swiftdeploy.policy.embedded import EmbeddedEngine
    from swiftdeploy.policy.opa import OpaEngine, OpaServer, opa_server_argv

# Names this package re-exports from the engines' modules, loaded on first use (PEP 562).
_LAZY = {
    "EmbeddedEngine": "swiftdeploy.policy.embedded",
    "OpaEngine": "swiftdeploy.policy.opa",
    "OpaServer": "swiftdeploy.policy.opa",
    "opa_server_argv": "swiftdeploy.policy.opa",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


__all__ = [
    "CANARY",
    "ENGINES",
    "INFRASTRUCTURE",
    "PACKAGES",
    "Decision",
    "EmbeddedEngine",
    "EngineDeps",
    "OpaEngine",
    "OpaServer",
    "PolicyEngine",
    "Reason",
    "Verdict",
    "create_engine",
    "engine_from_policy",
    "known_engines",
    "opa_server_argv",
]


@dataclass(frozen=True)
class EngineDeps:
    """What an engine is made from."""

    directory: Path  # the project's policies (OPA: for `check`)
    url: str | None  # an OPA server's address
    timeout: float
    opa_binary: str


def embedded_engine(deps: EngineDeps) -> PolicyEngine:
    from swiftdeploy.policy.embedded import EmbeddedEngine

    return EmbeddedEngine(deps.directory)


def opa_engine(deps: EngineDeps) -> PolicyEngine:
    if not deps.url:
        raise BadInputError(
            "policy engine 'opa' needs the URL of an OPA server",
            hint="set policy.opa.url in swiftdeploy.yaml, e.g. http://127.0.0.1:8181",
        )
    from swiftdeploy.policy.opa import OpaEngine

    return OpaEngine(
        deps.url, timeout=deps.timeout, directory=deps.directory, opa_binary=deps.opa_binary
    )


EngineFactory = Callable[[EngineDeps], PolicyEngine]

ENGINES: Registry[EngineFactory] = Registry(
    "policy engine",
    "swiftdeploy.policy_engines",
    {"embedded": "swiftdeploy.policy:embedded_engine", "opa": "swiftdeploy.policy:opa_engine"},
)


def known_engines() -> list[str]:
    return ENGINES.names()


def create_engine(
    name: str,
    *,
    directory: Path,
    url: str | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    opa_binary: str = "opa",
) -> PolicyEngine:
    """The engine called `name`, reading policies from `directory` (OPA: for `check`)."""
    return ENGINES.get(name)(EngineDeps(directory, url, timeout, opa_binary))


def engine_from_policy(
    policy: Policy, project_dir: Path, *, url: str | None = None, opa_binary: str = "opa"
) -> PolicyEngine:
    """The engine a manifest's `policy:` section asks for; `url` overrides policy.opa.url
    (the CLI passes the address of the OPA server it started itself)."""
    return create_engine(
        policy.engine,
        directory=project_dir / policy.directory,
        url=url or policy.opa.url,
        timeout=policy.opa.timeout,
        opa_binary=opa_binary,
    )
