"""What the commands share: the project's tracks (run by the runtime backend), its
platform processes (OPA, Prometheus), the state, and the audit recorder. Every change
to the state is persisted before the next one, so an interrupted command leaves a
state the next command can carry on from.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

from swiftdeploy.audit.recorder import Recorder
from swiftdeploy.errors import BadInputError, OperationalError, StateError
from swiftdeploy.manifest import LoadedManifest
from swiftdeploy.ports import free_port
from swiftdeploy.probe import wait_for_ok
from swiftdeploy.proc import ProcessSpec
from swiftdeploy.runtime.base import ProcessManager, TrackRuntime
from swiftdeploy.state import State, StateStore, Track
from swiftdeploy.tools import find_opa
from swiftdeploy.traffic.base import TrafficRouter

if TYPE_CHECKING:
    from swiftdeploy.metrics.prometheus_server import PrometheusServer

OPA_SOCKET = "opa.sock"

Progress = Callable[[str], None]


@dataclass
class Fleet:
    """The dependencies every operation needs, passed in rather than looked up."""

    loaded: LoadedManifest
    tracks: TrackRuntime
    processes: ProcessManager  # the platform's: OPA and Prometheus when run here
    router: TrafficRouter | None  # None where the runtime splits traffic itself
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
        if self.router is not None:
            self.router.close()

    def transition(
        self, state: State, reason: str, event: str | None = None, **updates: Any
    ) -> State:
        """Record a phase change first, then persist it: a change that cannot be
        recorded is not made. `event` names the change for the events read from the
        trail (docs/events.md)."""
        after = state.model_copy(update=updates)
        self.recorder.record(
            "transition",
            event=event,
            rollout_id=after.rollout_id,
            phase_before=state.phase.value,
            phase_after=after.phase.value,
            pause_kind=after.pause_kind,
            stable_version=after.stable_version,
            canary_version=after.canary_version,
            step_index=after.step_index,
            canary_weight=after.canary_weight,
            reason=reason,
        )
        return self.store.save(after)

    # --- platform -------------------------------------------------------------

    def ensure_platform(self, state: State) -> State:
        """What serves the tracks up and routing the persisted split, and the local
        Prometheus and OPA when the manifest uses them without naming a server."""
        self.tracks.ensure_platform()
        metrics = self.loaded.manifest.metrics
        if metrics.provider == "prometheus" and not metrics.prometheus.url:
            self.ensure_prometheus(state)
        policy = self.loaded.manifest.policy
        if policy.engine == "opa" and not policy.opa.url:
            self.ensure_opa(self.store.load())
        return self.store.load()

    def apply_routes(self, state: State) -> None:
        self.tracks.apply_split(state)
        self._replicas_changed(state)

    def _replicas_changed(self, state: State) -> None:
        if self.prometheus is not None:
            self.prometheus.write_targets(state)

    def require_router(self) -> TrafficRouter:
        """The nginx router, for what only it can answer (the `nginx` metrics provider)."""
        if self.router is None:
            raise BadInputError(
                f"{self.loaded.where('runtime')}: the {self.loaded.manifest.runtime} runtime "
                "has no nginx router",
                hint="choose metrics.provider scrape or prometheus",
            )
        return self.router

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
        self.processes.ensure_running()
        if not any(p.name == "prometheus" and p.running for p in self.processes.processes()):
            self.progress("starting prometheus")
            self.processes.start(server.prepare())
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
        self.processes.ensure_running()
        if not any(p.name == "opa" and p.running for p in self.processes.processes()):
            self.progress("starting opa")
            from swiftdeploy.policy.opa import opa_server_argv

            socket.unlink(missing_ok=True)  # a stale one from a killed OPA
            argv = opa_server_argv(
                self.loaded.project_dir / policy.directory, socket, opa_binary=opa
            )
            self.processes.start(ProcessSpec(name="opa", argv=argv))
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

    def ensure_track(self, state: State, track: Track, version: str, count: int) -> State:
        return self.tracks.ensure_track(state, track, version, count)

    def replace_stable(self, state: State, version: str) -> State:
        """Rolling replace (resumable), then `version` is the stable one."""
        state = self.tracks.replace_stable(state, version)
        self._replicas_changed(state)
        return self.store.save(state.model_copy(update={"stable_version": version}))

    def reconcile(self, state: State) -> State:
        """Make the world match the state after an interruption: the router routes
        exactly the ready replicas, and no replica runs that the state does not route."""
        state = self.tracks.reconcile(self.ensure_platform(state))
        self._replicas_changed(state)
        return state

    def ensure_canary(self, state: State) -> State:
        """Start the canary replicas an interruption left missing, then route them."""
        version = state.canary_version
        assert version is not None
        desired = self.loaded.manifest.strategy.canary.replicas
        if len(state.track("canary")) < desired:
            state = self.ensure_track(state, "canary", version, desired)
            self.apply_routes(state)
        return state

    def stop_canary(self, state: State) -> State:
        state = self.store.save(state.model_copy(update={"canary_weight": 0}))
        state = self.tracks.retire_track(state, "canary")
        self._replicas_changed(state)
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
        self.tracks.check_version(version)

    def require_canary(self, state: State) -> None:
        if not state.track("canary"):
            raise StateError(
                "no canary is running", hint="start one with `swiftdeploy canary VERSION`"
            )
