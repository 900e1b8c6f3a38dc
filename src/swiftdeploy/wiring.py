"""Builds what a command needs from the manifest: the fleet (tracks on the manifest's
runtime, router, state store, audit log), the project's locks, the policy engine, the
metrics provider and the rollout engine. The one place that knows which implementation
goes with which manifest setting; commands, the driver and the CLI take what it builds."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import httpx

from swiftdeploy.audit.log import AuditLog
from swiftdeploy.audit.recorder import AuditRecorder
from swiftdeploy.fleet import Fleet, Progress
from swiftdeploy.lock import project_lock
from swiftdeploy.manifest import LoadedManifest
from swiftdeploy.metrics import ProviderDeps, create_provider
from swiftdeploy.metrics.base import MetricsProvider
from swiftdeploy.notify.hooks import HookCaller, hook_caller
from swiftdeploy.notify.secrets import Secrets, resolve_secrets
from swiftdeploy.policy import engine_from_policy
from swiftdeploy.policy.base import PolicyEngine
from swiftdeploy.runtime import backend
from swiftdeploy.runtime.base import BackendDeps
from swiftdeploy.tools import find_opa
from swiftdeploy.traffic import HOST_ROUTER, create_router

if TYPE_CHECKING:
    from swiftdeploy.rollout.engine import RolloutEngine, TickReport

# A one-shot reading without a saved history waits this long for its second scrape.
BOOTSTRAP_S = 1.0


@dataclass(frozen=True)
class AuditSettings:
    path: Path
    max_bytes: int
    secrets: tuple[str, ...]


def audit_settings(loaded: LoadedManifest) -> AuditSettings:
    """Where the trail is (`audit.path`, relative to the manifest), its size, its secrets."""
    audit = loaded.manifest.audit
    return AuditSettings(
        path=loaded.project_dir / audit.path,
        max_bytes=audit.max_bytes,
        secrets=tuple(loaded.manifest.service.secret_values()),
    )


def open_audit_log(loaded: LoadedManifest, command: Sequence[str] | None = None) -> AuditLog:
    """The project's audit log, redacting the manifest's secret env values."""
    audit = audit_settings(loaded)
    return AuditLog(audit.path, audit.max_bytes, audit.secrets, command=command)


def open_fleet(loaded: LoadedManifest, progress: Progress) -> Fleet:
    """The fleet of a project: its tracks on the manifest's runtime, its platform
    processes, router, state, HTTP client and audit trail."""
    runtime = backend(loaded.manifest.runtime)
    deps = BackendDeps(
        loaded=loaded,
        store=runtime.state_store(loaded),
        http=httpx.Client(timeout=2.0, trust_env=False),
        progress=progress,
        processes=runtime.process_manager(loaded),
        router=(
            create_router(HOST_ROUTER, loaded.manifest, loaded.state_dir)
            if runtime.NGINX_ROUTED
            else None
        ),
    )
    return Fleet(
        loaded=loaded,
        tracks=runtime.create_tracks(deps),
        processes=deps.processes,
        router=deps.router,
        store=deps.store,
        http=deps.http,
        progress=progress,
        recorder=AuditRecorder(open_audit_log(loaded)),
    )


@contextmanager
def project_locks(loaded: LoadedManifest) -> Iterator[None]:
    """What a mutating command holds: the project's lock, then its runtime's."""
    with project_lock(loaded.state_dir), backend(loaded.manifest.runtime).shared_lock(loaded):
        yield


def policy_engine(fleet: Fleet) -> PolicyEngine:
    """The manifest's engine; for `opa` without a URL, the project's own OPA server."""
    policy = fleet.loaded.manifest.policy
    url = None
    if policy.engine == "opa":
        url = fleet.ensure_opa(fleet.store.load())
    return engine_from_policy(
        policy, fleet.loaded.project_dir, url=url, opa_binary=find_opa() or "opa"
    )


def metrics_provider(fleet: Fleet, keep_history: bool = True) -> MetricsProvider:
    manifest = fleet.loaded.manifest
    deps = ProviderDeps(
        settings=manifest.metrics,
        app_targets=fleet.metrics_targets,
        router_metrics=lambda track: fleet.require_router().read_metrics(track),
        router_history=lambda track, start, end: fleet.require_router().read_history(
            track, start, end
        ),
        prometheus_url=lambda: fleet.ensure_prometheus(fleet.store.load()),
        client=fleet.http,
        min_requests=0,
        state_dir=fleet.state_dir,
        bootstrap_s=BOOTSTRAP_S,
        keep_history=keep_history,
        prometheus_labels=(
            {"namespace": manifest.kubernetes.namespace, "service": manifest.service.name}
            if manifest.runtime == "kubernetes"
            else None
        ),
    )
    return create_provider(manifest.metrics.provider, deps)


def rollout_engine(
    fleet: Fleet,
    policy: PolicyEngine,
    on_tick: Callable[[TickReport], None] = lambda report: None,
    stop_requested: Callable[[], bool] = lambda: False,
    secrets: Secrets | None = None,
) -> RolloutEngine:
    """The rollout engine; `secrets`: the ones the driver resolved at its start (its
    notifier signs with the same), else read now."""
    from swiftdeploy.rollout.engine import RolloutEngine  # scipy, through the statistics

    return RolloutEngine(
        fleet=fleet,
        metrics=metrics_provider(fleet),
        policy=policy,
        on_tick=on_tick,
        stop_requested=stop_requested,
        hooks=gating_hooks(fleet.loaded, secrets),
    )


def gating_hooks(loaded: LoadedManifest, secrets: Secrets | None = None) -> HookCaller | None:
    """The manifest's hooks with their secrets (given, or read once now: a missing
    secret is one clear error before anything starts). None when it declares no hook."""
    if not loaded.manifest.hooks:
        return None
    return hook_caller(loaded, secrets if secrets is not None else resolve_secrets(loaded))
