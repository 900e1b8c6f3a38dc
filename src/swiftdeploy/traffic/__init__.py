"""Traffic routers, by name: the split between the tracks (`traffic.base.TrafficRouter`).
May import: state, manifest and the foundation; not another part.

An unknown name is an error, never a silent fallback.
"""

from __future__ import annotations

from pathlib import Path

from swiftdeploy.manifest import Manifest
from swiftdeploy.registry import lookup
from swiftdeploy.traffic.base import TrafficRouter
from swiftdeploy.traffic.nginx import NginxRouter

ROUTERS = {"nginx": NginxRouter}
# The router of the backends whose tracks it splits (`Backend.NGINX_ROUTED`).
HOST_ROUTER = "nginx"


def create_router(name: str, manifest: Manifest, state_dir: Path) -> TrafficRouter:
    return lookup(ROUTERS, "traffic router", name)(manifest, state_dir)
