"""Replica and route operations shared by the commands: start behind health checks,
route, drain, stop. Every change to the state is persisted before the next one, so an
interrupted command leaves a state the next command can carry on from.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import httpx

from swiftdeploy import proc
from swiftdeploy.errors import BadInputError, OperationalError, RuntimeProcessError, StateError
from swiftdeploy.fsutil import atomic_write, private_dir
from swiftdeploy.manifest import LoadedManifest
from swiftdeploy.policy.base import Decision
from swiftdeploy.ports import free_port
from swiftdeploy.probe import wait_for_ok
from swiftdeploy.rollout.state import Replica, State, StateStore, Track
from swiftdeploy.runtime.base import ProcessSpec, Runtime
from swiftdeploy.tools import find_opa
from swiftdeploy.traffic.base import Routes, TrafficRouter

if TYPE_CHECKING:
    from swiftdeploy.metrics.prometheus_server import PrometheusServer

# Processes that belong to the platform, not to a track.
PLATFORM_PROCESSES = frozenset({"nginx", "opa", "prometheus"})
OPA_SOCKET = "opa.sock"
CHAOS_TOKEN_ENV = "SWIFTDEPLOY_CHAOS_TOKEN"  # noqa: S105 - a variable name, not a secret

Progress = Callable[[str], None]


class Recorder(Protocol):
    """Where actions, transitions and decisions are written before they are acted on."""

    def record(self, kind: str, **fields: Any) -> None: ...


def record_decision(
    recorder: Recorder,
    decision: Decision,
    package: str,
    policy_input: dict[str, Any],
    measurements: dict[str, Any],
    statistics: dict[str, Any],
    **fields: Any,
) -> None:
    """A gate decision with everything needed to explain or replay it later."""
    recorder.record(
        "decision",
        decision={
            "engine": decision.engine,
            "package": package,
            "decision_id": decision.decision_id,
            "input": policy_input,
            "output": decision.model_dump(mode="json"),
            "measurements": measurements,
            "statistics": statistics,
            "thresholds": policy_input["thresholds"],
            "step": policy_input.get("step"),
        },
        **fields,
    )


@dataclass
class Fleet:
    """The dependencies every operation needs, passed in rather than looked up."""

    loaded: LoadedManifest
    runtime: Runtime
    router: TrafficRouter
    store: StateStore
    http: httpx.Client
    progress: Progress
    recorder: Recorder
    prometheus: PrometheusServer | None = None

    @property
    def state_dir(self) -> Path:
        return self.loaded.state_dir

    def close(self) -> None:
        """Close the HTTP clients (the fleet's and the router's)."""
        self.http.close()
        self.router.close()

    def transition(self, state: State, reason: str, **updates: Any) -> State:
        """Record a phase change first, then persist it: a change that cannot be
        recorded is not made."""
        after = state.model_copy(update=updates)
        self.recorder.record(
            "transition",
            rollout_id=after.rollout_id,
            phase_before=state.phase.value,
            phase_after=after.phase.value,
            stable_version=after.stable_version,
            canary_version=after.canary_version,
            step_index=after.step_index,
            canary_weight=after.canary_weight,
            reason=reason,
        )
        return self.store.save(after)

    # --- platform -------------------------------------------------------------

    def ensure_platform(self, state: State) -> State:
        """supervisord and nginx up, nginx serving the persisted routes, and the local
        Prometheus when the manifest measures with one and names no server."""
        self.runtime.ensure_running()
        running = {p.name for p in self.runtime.processes() if p.running}
        if "nginx" not in running:
            self.progress("starting nginx")
            self.runtime.start(self.router.prepare())
        self.router.wait_ready(timeout=10)
        metrics = self.loaded.manifest.metrics
        if metrics.provider == "prometheus" and not metrics.prometheus.url:
            self.ensure_prometheus(state)
        policy = self.loaded.manifest.policy
        if policy.engine == "opa" and not policy.opa.url:
            self.ensure_opa(self.store.load())
        return self.store.load()

    def apply_routes(self, state: State) -> None:
        self.router.apply(routes_for(state))
        if self.prometheus is not None:
            self.prometheus.write_targets(state)

    def ensure_prometheus(self, state: State) -> str:
        """The URL of the Prometheus to query: the manifest's, or one started here."""
        settings = self.loaded.manifest.metrics.prometheus
        if settings.url:
            return settings.url
        if state.prometheus_port is None:
            taken = {r.port for r in state.replicas}
            state = self.store.save(
                state.model_copy(update={"prometheus_port": free_port(avoid=taken)})
            )
        assert state.prometheus_port is not None
        from swiftdeploy.metrics.prometheus_server import PrometheusServer

        server = PrometheusServer(self.state_dir, state.prometheus_port, settings.scrape_interval)
        self.prometheus = server
        self.runtime.ensure_running()
        if not any(p.name == "prometheus" and p.running for p in self.runtime.processes()):
            self.progress("starting prometheus")
            self.runtime.start(server.prepare())
        server.write_targets(state)
        failure = wait_for_ok(self.http, f"{server.url}/-/ready", timeout=30, interval=0.1)
        if failure is not None:
            raise OperationalError(
                f"Prometheus at {server.url} was not ready within 30s ({failure})"
            )
        return server.url

    def ensure_opa(self, state: State) -> str:
        """The URL of the OPA server to ask: the manifest's, or one run here under
        supervisord on the project's policy directory, with decision logs on."""
        policy = self.loaded.manifest.policy
        if policy.opa.url:
            return policy.opa.url
        opa = find_opa()
        if opa is None:
            raise OperationalError(
                "OPA is not installed", hint="run `make setup`, or set SWIFTDEPLOY_OPA"
            )
        # A unix socket in the 0700 state directory: no other local user can read or
        # change the policies, the data or a decision.
        socket = self.state_dir / OPA_SOCKET
        self.runtime.ensure_running()
        if not any(p.name == "opa" and p.running for p in self.runtime.processes()):
            self.progress("starting opa")
            from swiftdeploy.policy.opa import opa_server_argv

            socket.unlink(missing_ok=True)  # a stale one from a killed OPA
            argv = opa_server_argv(
                self.loaded.project_dir / policy.directory, socket, opa_binary=opa
            )
            self.runtime.start(ProcessSpec(name="opa", argv=argv))
        transport = httpx.HTTPTransport(uds=str(socket))
        with httpx.Client(transport=transport, timeout=1.0, trust_env=False) as client:
            failure = wait_for_ok(client, "http://opa/health", timeout=15)
        if failure is not None:
            raise OperationalError(f"OPA on {socket} did not answer within 15s ({failure})")
        return f"unix://{socket}"

    def metrics_targets(self, track: str) -> list[str]:
        """The /metrics URLs of a track's routed replicas, from the persisted state."""
        replicas = self.store.load().replicas
        return [f"http://{r.endpoint}/metrics" for r in replicas if r.track == track and r.ready]

    # --- replicas -------------------------------------------------------------

    def start_replica(self, state: State, track: Track, version: str, index: int) -> State:
        taken = {r.port for r in state.replicas}
        if state.prometheus_port:
            taken.add(state.prometheus_port)
        port = free_port(avoid=taken)
        replica = Replica(
            name=f"{track}-{_safe(version)}-{index}", track=track, version=version, port=port
        )
        # Recorded before it starts, so an interrupted start is still cleaned up later.
        state = self.store.save(state.with_replica(replica))
        self.progress(f"starting {replica.name} on port {port}")
        self.runtime.start(self._spec(replica))
        self.wait_healthy(replica)
        return self.store.save(state.with_replica(replica.model_copy(update={"ready": True})))

    def _spec(self, replica: Replica) -> ProcessSpec:
        service = self.loaded.manifest.service
        program = proc.resolve_program(service.command[0], where="service.command")
        argv = [program] + [
            arg.format(port=replica.port, version=replica.version) for arg in service.command[1:]
        ]
        env = {
            **service.plain_env(),
            "SWIFTDEPLOY_TRACK": replica.track,
            "SWIFTDEPLOY_VERSION": replica.version,
        }
        if service.chaos:
            env[CHAOS_TOKEN_ENV] = chaos_token(self.state_dir)
        return ProcessSpec(
            name=replica.name,
            argv=argv,
            env=env,
            log_path=self.state_dir / "logs" / f"{replica.name}.log",
        )

    def wait_healthy(self, replica: Replica) -> None:
        service = self.loaded.manifest.service
        url = f"http://{replica.endpoint}{service.health}"
        failure = wait_for_ok(self.http, url, service.start_timeout, interval=0.1)
        if failure is None:
            return
        raise RuntimeProcessError(
            f"{replica.name} failed its health check {url} within "
            f"{service.start_timeout:g}s ({failure})",
            hint=f"see {self.state_dir / 'logs' / (replica.name + '.log')}",
        )

    def start_track(self, state: State, track: Track, version: str, count: int) -> State:
        first = _next_index(state, track, version)
        for index in range(first, first + count):
            state = self.start_replica(state, track, version, index)
        return state

    def retire(self, state: State, replicas: list[Replica]) -> State:
        """Take replicas out of the routes, let in-flight requests finish, then stop them."""
        if not replicas:
            return state
        names = {r.name for r in replicas}
        drained = state.model_copy(
            update={
                "replicas": tuple(
                    r.model_copy(update={"ready": False}) if r.name in names else r
                    for r in state.replicas
                )
            }
        )
        state = self.store.save(drained)
        self.apply_routes(state)
        time.sleep(self.loaded.manifest.traffic.drain)
        for replica in replicas:
            self.progress(f"stopping {replica.name}")
            self.runtime.stop(replica.name)
        return self.store.save(state.without(names))

    def replace_stable(self, state: State, version: str) -> State:
        """Rolling replace: one new replica up and routed before one old one goes.

        Idempotent: after an interruption it starts only the replicas still missing
        and retires only the old ones still there.
        """
        desired = self.loaded.manifest.service.replicas
        while True:
            stable = state.track("stable")
            new = [r for r in stable if r.version == version and r.ready]
            old = [r for r in stable if r.version != version]
            if len(new) >= desired and not old:
                break
            if len(new) < desired:
                index = _next_index(state, "stable", version)
                state = self.start_replica(state, "stable", version, index)
                self.apply_routes(state)
            if old:
                state = self.retire(state, [old[0]])
        return self.store.save(state.model_copy(update={"stable_version": version}))

    def reconcile(self, state: State) -> State:
        """Make the world match the state after an interruption: nginx routes exactly
        the ready replicas, and no replica runs that the state does not route."""
        state = self.ensure_platform(state)
        self.apply_routes(state)
        stale = [r for r in state.replicas if not r.ready]
        for replica in stale:
            self.progress(f"cleaning up {replica.name} (interrupted start or stop)")
            self.runtime.stop(replica.name)
        state = self.store.save(state.without({r.name for r in stale}))
        known = {r.name for r in state.replicas} | PLATFORM_PROCESSES
        for process in self.runtime.processes():
            if process.name not in known:
                self.progress(f"stopping orphan process {process.name}")
                self.runtime.stop(process.name)
        return state

    def ensure_canary(self, state: State) -> State:
        """Start the canary replicas an interruption left missing, then route them."""
        version = state.canary_version
        assert version is not None
        missing = self.loaded.manifest.strategy.canary.replicas - len(state.track("canary"))
        if missing > 0:
            state = self.start_track(state, "canary", version, missing)
            self.apply_routes(state)
        return state

    def stop_canary(self, state: State) -> State:
        state = self.store.save(state.model_copy(update={"canary_weight": 0}))
        state = self.retire(state, state.track("canary"))
        return self.store.save(
            state.model_copy(update={"canary_version": None, "step_index": None})
        )

    def require_stable(self, state: State) -> None:
        if not state.track("stable"):
            raise StateError("nothing is deployed yet", hint="run `swiftdeploy deploy` first")

    def require_canary_can_start(self, state: State, version: str) -> None:
        """Stable deployed, no canary running, and a version that is not the stable one."""
        self.require_stable(state)
        if state.track("canary"):
            raise StateError(
                f"a canary ({state.canary_version}) is already running",
                hint="`swiftdeploy resume` or `promote` carries it on; `rollback` ends it",
            )
        if version == state.stable_version:
            raise BadInputError(f"{version} is already the stable version")

    def require_canary(self, state: State) -> None:
        if not state.track("canary"):
            raise StateError(
                "no canary is running", hint="start one with `swiftdeploy canary VERSION`"
            )


def routes_for(state: State) -> Routes:
    stable = tuple(r.endpoint for r in state.track("stable") if r.ready)
    canary = tuple(r.endpoint for r in state.track("canary") if r.ready)
    return Routes(canary_weight=state.canary_weight if canary else 0, stable=stable, canary=canary)


def chaos_token(state_dir: Path) -> str:
    path = state_dir / "chaos.token"
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        private_dir(state_dir)
        token = secrets.token_urlsafe(24)
        atomic_write(path, token + "\n")
        return token


def _safe(version: str) -> str:
    return version.replace(".", "_")


def _next_index(state: State, track: Track, version: str) -> int:
    prefix = f"{track}-{_safe(version)}-"
    used = [int(r.name.removeprefix(prefix)) for r in state.replicas if r.name.startswith(prefix)]
    return max(used, default=-1) + 1
