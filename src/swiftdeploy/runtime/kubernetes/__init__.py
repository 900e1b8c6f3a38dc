"""The Kubernetes backend: tracks as Deployments, the split as a Gateway API HTTPRoute,
the state in a ConfigMap and the lock a Lease, all in the manifest's namespace.

This module is a `runtime.base.Backend`. The `kubernetes` client loads only here
(`swiftdeploy.runtime.backend("kubernetes")`), so other projects never pay for it.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager

from swiftdeploy.errors import BadInputError
from swiftdeploy.manifest import LoadedManifest
from swiftdeploy.runtime.base import BackendDeps, Check, ProcessManager, TrackRuntime
from swiftdeploy.runtime.kubernetes import objects
from swiftdeploy.runtime.kubernetes.api import (
    Kube,
    KubeApiError,
    KubeUnavailableError,
    context_of,
    open_kube,
)
from swiftdeploy.runtime.kubernetes.control import ConfigMapControl
from swiftdeploy.runtime.kubernetes.lease import LeaseLock
from swiftdeploy.runtime.kubernetes.store import ConfigMapStateStore
from swiftdeploy.runtime.kubernetes.tracks import KubeTracks
from swiftdeploy.runtime.supervisor import ProcessSupervisor
from swiftdeploy.state import StateStore

NGINX_ROUTED = False
# No driver under this machine's supervisor: rollouts are run by the driver in the
# cluster (`swiftdeploy kube install`; commands/driver.py `drive_controller`), which
# operators' CLIs on any machine steer through ConfigMaps (control.py).
HOST_DRIVER = False
CLUSTER_DRIVER = True

Key = tuple[str, str | None, str]
_CONNECTIONS: dict[Key, Kube] = {}
_LEASES: dict[Key, LeaseLock] = {}  # held by this command


def _key(loaded: LoadedManifest) -> Key:
    return (str(loaded.path), context_of(loaded), loaded.manifest.kubernetes.namespace)


def kube_of(loaded: LoadedManifest) -> Kube:
    """One connection per project and context for the whole command."""
    key = _key(loaded)
    if key not in _CONNECTIONS:
        _CONNECTIONS[key] = open_kube(loaded)
    return _CONNECTIONS[key]


def process_manager(loaded: LoadedManifest) -> ProcessManager:
    # The platform processes that still run on the operator's machine: OPA, when the
    # policy engine is opa without a server's URL.
    return ProcessSupervisor(loaded.state_dir)


def create_tracks(deps: BackendDeps) -> TrackRuntime:
    return KubeTracks(deps, kube_of(deps.loaded))


def _guard(loaded: LoadedManifest) -> Callable[[], None]:
    """Raises before a write once this command lost the Lease it took."""
    key = _key(loaded)

    def guard() -> None:
        lease = _LEASES.get(key)
        if lease is not None:
            lease.check()

    return guard


def state_store(loaded: LoadedManifest) -> StateStore:
    return ConfigMapStateStore(kube_of(loaded), loaded.manifest, _guard(loaded))


def control_channel(loaded: LoadedManifest) -> ConfigMapControl:
    """Requests to the service's driver in the cluster, and its heartbeat."""
    return ConfigMapControl(kube_of(loaded), loaded.manifest, _guard(loaded))


def lease_of(loaded: LoadedManifest) -> LeaseLock | None:
    """The Lease this command took for the project, if it took one."""
    return _LEASES.get(_key(loaded))


def shared_lock(loaded: LoadedManifest) -> AbstractContextManager[None]:
    lease = _LEASES[_key(loaded)] = LeaseLock(kube_of(loaded), loaded.manifest)
    return lease.held()


def preflight(loaded: LoadedManifest) -> list[str]:
    """A server-side dry run (dryRun=All) of every object the service is made of: the
    API server's admission and validation say now what would fail later."""
    manifest = loaded.manifest
    kube = kube_of(loaded)
    version = manifest.service.version
    candidates = [
        objects.service(manifest, "stable"),
        objects.deployment(manifest, "stable", version, manifest.service.replicas),
        objects.service(manifest, "canary"),
        objects.deployment(manifest, "canary", version, manifest.strategy.canary.replicas),
        objects.http_route(manifest, manifest.strategy.canary.steps[0].weight, canary=True),
        objects.state_config_map(manifest, "{}"),
    ]
    secret = objects.env_secret(manifest)
    if secret is not None:
        candidates.insert(0, secret)
    checks = [f"kubernetes: {kube.server}, namespace {kube.namespace}"]
    for obj in candidates:
        what = f"{obj['kind']} {kube.namespace}/{obj['metadata']['name']}"
        try:
            kube.apply(obj, dry_run=True)
        except KubeApiError as exc:
            if isinstance(exc, KubeUnavailableError) or exc.status in (401, 403):
                raise
            hint = "fix the manifest value it names"
            if obj["kind"] == "HTTPRoute" and exc.status == 404:
                hint = "are the Gateway API CRDs installed? `swiftdeploy doctor` says"
            raise BadInputError(
                f"{what} fails the server-side dry run: {exc.said}", hint=hint
            ) from None
        checks.append(f"server-side dry run: {what}")
    return checks


def doctor(loaded: LoadedManifest | None) -> list[Check]:
    import kubernetes

    checks = [Check("kubernetes client", True, f"kubernetes {kubernetes.__version__}")]
    if loaded is None:
        return checks
    try:
        kube = kube_of(loaded)
        checks.append(Check("kubernetes API server", True, f"{kube.version()} at {kube.server}"))
        served = kube.serves("gateway.networking.k8s.io/v1", "httproutes")
    except (KubeApiError, BadInputError) as exc:
        return [*checks, Check("kubernetes API server", False, exc.one_line())]
    detail = (
        "HTTPRoute (gateway.networking.k8s.io/v1) is served"
        if served
        else "missing: install the Gateway API CRDs (standard channel)"
    )
    return [*checks, Check("Gateway API CRDs", served, detail)]
