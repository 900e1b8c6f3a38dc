"""Runtime backends, by name: what runs the tracks (`runtime.base.TrackRuntime`).
May import: traffic (the router hosted tracks use), state, manifest and the foundation.

A backend is a module (or any object) with the `runtime.base.Backend` functions; a third
party registers one under the entry point group `swiftdeploy.runtimes`. An unknown name
is an error, never a silent fallback.

A backend's module is imported only when it is asked for, so a backend's clients
load only for the projects that use it (docker and kubernetes are extras).
"""

from __future__ import annotations

from swiftdeploy.registry import Registry
from swiftdeploy.runtime.base import Backend

BACKENDS: Registry[Backend] = Registry(
    "runtime",
    "swiftdeploy.runtimes",
    {
        "local": "swiftdeploy.runtime.local",
        "docker": "swiftdeploy.runtime.docker",
        "kubernetes": "swiftdeploy.runtime.kubernetes",
    },
)


def backend(name: str) -> Backend:
    return BACKENDS.get(name)
