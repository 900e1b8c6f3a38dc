"""A runtime is a module of `runtime.base.Backend` functions: this one runs the tracks
as the local runtime does and adds its own check to `validate`."""

from __future__ import annotations

from swiftdeploy.manifest import LoadedManifest
from swiftdeploy.runtime.local import (
    HOST_DRIVER,
    NGINX_ROUTED,
    create_tracks,
    doctor,
    process_manager,
    shared_lock,
    state_store,
)
from swiftdeploy.runtime.local import preflight as local_preflight

__all__ = [
    "HOST_DRIVER",
    "NGINX_ROUTED",
    "create_tracks",
    "doctor",
    "preflight",
    "process_manager",
    "shared_lock",
    "state_store",
]


def preflight(loaded: LoadedManifest) -> list[str]:
    return [*local_preflight(loaded), f"example runtime: {loaded.manifest.service.name}"]
