"""One command's parts and gates, in one place.

`command_context` is what every verb runs in: it reads nothing itself (it is given the
manifest read), runs the gates in the one order (preflight -> the project's lock ->
the infrastructure gate -> the verb), builds the parts the manifest names (the fleet:
tracks on the manifest's runtime, router, state store, audit trail; the policy engine
and the rollout engine when the verb asks for them) and closes all of them when the
verb ends, however it ends. The builders below are the one place that knows which
implementation goes with which manifest setting; the driver, which handles its lock
itself, builds its engines with them too."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
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
from swiftdeploy.state import StateStore
from swiftdeploy.tools import find_opa
from swiftdeploy.traffic import HOST_ROUTER, create_router

if TYPE_CHECKING:
    from swiftdeploy.rollout.engine import RolloutEngine, TickReport

# A one-shot reading without a saved history waits this long for its second scrape.
BOOTSTRAP_S = 1.0

Warn = Callable[[list[str]], None]


def _silent(lines: list[str]) -> None:
    """Warnings nobody reads (tests and benchmarks)."""


# --- the context ----------------------------------------------------------------------


@dataclass
class CommandContext:
    """What a verb works with: the manifest read, its fleet, and the policy and rollout
    engines, built on first use and closed with the fleet when the command ends."""

    loaded: LoadedManifest
    fleet: Fleet
    _policy: PolicyEngine | None = None
    _engines: list[RolloutEngine] = field(default_factory=list)

    def policy(self) -> PolicyEngine:
        """The manifest's policy engine (for `opa` without a URL, the project's OPA,
        started here if it is not running)."""
        if self._policy is None:
            self._policy = policy_engine(self.fleet)
        return self._policy

    def engine(
        self,
        on_tick: Callable[[TickReport], None] = lambda report: None,
        stop_requested: Callable[[], bool] = lambda: False,
    ) -> RolloutEngine:
        """A rollout engine on this command's fleet and policy engine."""
        engine = rollout_engine(self.fleet, self.policy(), on_tick, stop_requested)
        self._engines.append(engine)
        return engine

    def close(self) -> None:
        """Close what was opened, the last first; each once, and all of them even when
        one fails (the first failure is raised once all are closed)."""
        with ExitStack() as stack:
            stack.callback(self.fleet.close)
            if self._policy is not None:
                stack.callback(self._policy.close)
            for engine in self._engines:  # its load, its hooks in flight, its looks
                stack.callback(engine.close)
            self._policy, self._engines = None, []


@contextmanager
def command_context(
    loaded: LoadedManifest,
    progress: Progress,
    *,
    preflight: bool = False,
    version: str | None = None,
    lock: bool = False,
    record_command: bool = True,
    gate: str | None = None,
    warn: Warn = _silent,
) -> Iterator[CommandContext]:
    """The parts of a command, through its gates in the one order, closed after it.

    - `preflight`: `validate`'s checks first (raise on bad input, nothing started), and
      its warnings (about who can move the numbers or read the replicas of `version`)
      said through `warn`;
    - `lock`: the project's lock, then its runtime's (Kubernetes: the service's Lease),
      held until the command ends; with `record_command`, the command is recorded in
      the trail before it acts;
    - `gate`: the infrastructure policy asked for this action (it needs `lock`); a
      refusal is recorded and raised, and nothing is started.
    """
    if gate is not None and not lock:
        raise ValueError("the infrastructure gate is asked under the project's lock")
    if preflight:
        warn(preflight_warnings(loaded, version))
    with ExitStack() as stack:
        if lock:
            stack.enter_context(project_locks(loaded))
        context = CommandContext(loaded, open_fleet(loaded, progress))
        stack.callback(context.close)
        if lock and record_command:
            fleet = context.fleet
            fleet.recorder.record("command", rollout_id=fleet.store.load().rollout_id)
        if gate is not None:
            infrastructure_gate(context, gate)
        yield context


def preflight_warnings(loaded: LoadedManifest, version: str | None = None) -> list[str]:
    """`validate`'s checks (raising on the first that fails), then its warnings about
    who can move the numbers or read the replicas of `version`: said at every start,
    not only by `validate`."""
    from swiftdeploy.commands.validate import account_warnings, evidence_warnings, preflight

    preflight(loaded)
    return evidence_warnings(loaded) + account_warnings(loaded, version)


def infrastructure_gate(context: CommandContext, action: str) -> None:
    from swiftdeploy.commands.gate import infrastructure_gate as ask

    fleet = context.fleet
    ask(context.loaded, context.policy(), fleet.recorder, action)


# --- the parts ------------------------------------------------------------------------


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


def state_store(loaded: LoadedManifest) -> StateStore:
    """Where the manifest's runtime keeps the state (a file here, a ConfigMap in a
    cluster), for what reads or follows it without a fleet."""
    return backend(loaded.manifest.runtime).state_store(loaded)


def open_fleet(loaded: LoadedManifest, progress: Progress) -> Fleet:
    """The fleet of a project: its tracks on the manifest's runtime, its platform
    processes, router, state, HTTP client and audit trail. Its owner closes it
    (`command_context` does)."""
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
