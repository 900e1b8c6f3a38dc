"""Policy engines: OPA over REST and embedded Rego (regopy), behind one interface.
May import: state, manifest and the foundation; not another part.

`create_engine(name, ...)` is the only way the rest of SwiftDeploy gets an engine;
an unknown name is a BadInputError that lists the known ones (no silent fallback).
The engines' modules (regopy, httpx) load when first used, not with this package:
importing `swiftdeploy.policy.base` for a Decision must not cost a command its
start-up time.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
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
    "INFRASTRUCTURE",
    "PACKAGES",
    "Decision",
    "EmbeddedEngine",
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

EngineFactory = Callable[[Path, str | None, float, str], PolicyEngine]


def _embedded(directory: Path, url: str | None, timeout: float, opa_binary: str) -> PolicyEngine:
    from swiftdeploy.policy.embedded import EmbeddedEngine

    return EmbeddedEngine(directory)


def _opa(directory: Path, url: str | None, timeout: float, opa_binary: str) -> PolicyEngine:
    if not url:
        raise BadInputError(
            "policy engine 'opa' needs the URL of an OPA server",
            hint="set policy.opa.url in swiftdeploy.yaml, e.g. http://127.0.0.1:8181",
        )
    from swiftdeploy.policy.opa import OpaEngine

    return OpaEngine(url, timeout=timeout, directory=directory, opa_binary=opa_binary)


_FACTORIES: dict[str, EngineFactory] = {"embedded": _embedded, "opa": _opa}


def known_engines() -> list[str]:
    return sorted(_FACTORIES)


def create_engine(
    name: str,
    *,
    directory: Path,
    url: str | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    opa_binary: str = "opa",
) -> PolicyEngine:
    """The engine called `name`, reading policies from `directory` (OPA: for `check`)."""
    factory = _FACTORIES.get(name)
    if factory is None:
        raise BadInputError(
            f"unknown policy engine {name!r}; known engines: {', '.join(known_engines())}",
            hint="set policy.engine in swiftdeploy.yaml",
        )
    return factory(directory, url, timeout, opa_binary)


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
