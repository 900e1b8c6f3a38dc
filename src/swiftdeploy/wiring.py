"""Builds the pluggable parts a command needs from the manifest: the policy engine,
the metrics provider and the rollout engine. The one place that knows which
implementation goes with which manifest setting; commands take what it builds."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from swiftdeploy.fleet import Fleet
from swiftdeploy.metrics import ProviderDeps, create_provider
from swiftdeploy.metrics.base import MetricsProvider
from swiftdeploy.policy import engine_from_policy
from swiftdeploy.policy.base import PolicyEngine
from swiftdeploy.tools import find_opa

if TYPE_CHECKING:
    from swiftdeploy.rollout.engine import RolloutEngine, TickReport

# A one-shot reading without a saved history waits this long for its second scrape.
BOOTSTRAP_S = 1.0


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
) -> RolloutEngine:
    from swiftdeploy.rollout.engine import RolloutEngine  # scipy, through the statistics

    return RolloutEngine(
        fleet=fleet,
        metrics=metrics_provider(fleet),
        policy=policy,
        on_tick=on_tick,
        stop_requested=stop_requested,
    )
