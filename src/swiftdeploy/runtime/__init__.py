"""Runtime backends, by name: what runs the tracks (`runtime.base.TrackRuntime`).
May import: traffic (the router hosted tracks use), state, manifest and the foundation.

An unknown name is an error, never a silent fallback.

A backend's module is imported only when it is asked for, so a backend's clients
load only for the projects that use it.
"""

from __future__ import annotations

from collections.abc import Callable

from swiftdeploy.registry import lookup
from swiftdeploy.runtime.base import Backend


def _local() -> Backend:
    from swiftdeploy.runtime import local

    return local


def _docker() -> Backend:
    from swiftdeploy.runtime import docker

    return docker


def _kubernetes() -> Backend:
    from swiftdeploy.runtime import kubernetes

    return kubernetes


BACKENDS: dict[str, Callable[[], Backend]] = {
    "local": _local,
    "docker": _docker,
    "kubernetes": _kubernetes,
}


def backend(name: str) -> Backend:
    return lookup(BACKENDS, "runtime", name)()
