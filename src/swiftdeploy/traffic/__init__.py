"""Traffic routers, by name: the split between the tracks (`traffic.base.TrafficRouter`).
May import: state, manifest and the foundation; not another part.

A router is made by a `RouterFactory`, `(manifest, state_dir) -> TrafficRouter` (a class
such as `NginxRouter` is one); a third party registers one under the entry point group
`swiftdeploy.routers`. An unknown name is an error, never a silent fallback.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from swiftdeploy.manifest import Manifest
from swiftdeploy.registry import Registry
from swiftdeploy.traffic.base import TrafficRouter

RouterFactory = Callable[[Manifest, Path], TrafficRouter]

ROUTERS: Registry[RouterFactory] = Registry(
    "traffic router", "swiftdeploy.routers", {"nginx": "swiftdeploy.traffic.nginx:NginxRouter"}
)
# The router of the backends whose tracks it splits (`Backend.NGINX_ROUTED`).
HOST_ROUTER = "nginx"


def create_router(name: str, manifest: Manifest, state_dir: Path) -> TrafficRouter:
    return ROUTERS.get(name)(manifest, state_dir)
