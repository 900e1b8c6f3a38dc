"""Runtimes, by name. An unknown name is an error."""

from __future__ import annotations

from pathlib import Path

from swiftdeploy.errors import BadInputError
from swiftdeploy.runtime.base import Runtime
from swiftdeploy.runtime.local import SupervisorRuntime

RUNTIMES = {"local": SupervisorRuntime}


def create_runtime(name: str, state_dir: Path) -> Runtime:
    try:
        factory = RUNTIMES[name]
    except KeyError:
        raise BadInputError(
            f"unknown runtime {name!r}", hint=f"choose one of: {', '.join(RUNTIMES)}"
        ) from None
    return factory(state_dir)
