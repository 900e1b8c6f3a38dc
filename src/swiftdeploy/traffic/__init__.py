"""Traffic routers, by name: the split between the tracks (`traffic.base.TrafficRouter`).
May import: state, manifest and the foundation; not another part.

An unknown name is an error, never a silent fallback.
"""

from __future__ import annotations

from pathlib import Path

from swiftdeploy.errors import BadInputError
from swiftdeploy.manifest import Manifest
from swiftdeploy.traffic.base import TrafficRouter
from swiftdeploy.traffic.nginx import NginxRouter

ROUTERS = {"nginx": NginxRouter}
# The router of the backends whose tracks it splits (`Backend.NGINX_ROUTED`).
HOST_ROUTER = "nginx"


def create_router(name: str, manifest: Manifest, state_dir: Path) -> TrafficRouter:
    try:
        factory = ROUTERS[name]
    except KeyError:
        raise BadInputError(
            f"unknown traffic router {name!r}", hint=f"choose one of: {', '.join(ROUTERS)}"
        ) from None
    return factory(manifest, state_dir)
