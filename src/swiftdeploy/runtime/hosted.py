"""Tracks hosted on this machine: replicas on loopback ports behind the nginx router.

`HostedTracks` does the track-level work (ports, health checks, routing, draining,
rolling replacement, cleanup after an interruption); how one replica is started,
stopped and inspected is a `ReplicaLauncher`'s (a supervisord program for the local
backend). Every change to the replicas is persisted before the next, so an
interrupted command leaves a state the next command can carry on from.
"""

from __future__ import annotations

import secrets
import time
from pathlib import Path
from typing import Protocol

import httpx

from swiftdeploy.durations import format_duration
from swiftdeploy.errors import RuntimeProcessError, TrafficError
from swiftdeploy.fsutil import atomic_write, private_dir
from swiftdeploy.manifest import EnvSecret, LoadedManifest
from swiftdeploy.ports import free_port
from swiftdeploy.probe import wait_for_ok
from swiftdeploy.runtime.base import DRIVER_PROCESS, BackendDeps, ProcessInfo, ReplicaView
from swiftdeploy.state import Replica, State, Track
from swiftdeploy.traffic.base import RouterStatus, Routes, TrafficRouter

# Processes that belong to the platform, not to a track: never swept as orphans.
PLATFORM_PROCESSES = frozenset({"nginx", "opa", "prometheus", DRIVER_PROCESS})
CHAOS_TOKEN_ENV = "SWIFTDEPLOY_CHAOS_TOKEN"  # noqa: S105 - a variable name, not a secret
ROUTER_READY_S = 10.0


class ReplicaLauncher(Protocol):
    """How one replica runs: a local process, or (later) a container."""

    def start(self, replica: Replica) -> None:
        """Start the replica, listening on its port; returns once it runs (not once
        it is healthy: that is the caller's health check)."""
        ...

    def stop(self, name: str) -> None:
        """Stop and forget a replica; stopping an unknown one is a no-op."""
        ...

    def inspect(self) -> dict[str, ProcessInfo]:
        """Every replica the launcher runs, by name, platform processes left out."""
        ...

    def logs(self, name: str) -> str:
        """Where to read a replica's output, for error hints."""
        ...

    def check_version(self, version: str) -> None:
        """Raise BadInputError when no replica of `version` could start."""
        ...


def replica_env(loaded: LoadedManifest, replica: Replica) -> dict[str, str]:
    """The environment every replica gets, whatever runs it."""
    service = loaded.manifest.service
    env = {
        **service.plain_env(),
        "SWIFTDEPLOY_TRACK": replica.track,
        "SWIFTDEPLOY_VERSION": replica.version,
    }
    if service.chaos:
        env[CHAOS_TOKEN_ENV] = chaos_token(loaded.state_dir)
    return env


def secret_env_names(loaded: LoadedManifest) -> tuple[str, ...]:
    """The environment variables the manifest's notifications and hooks read: kept from
    every replica, which runs the code under test."""
    return tuple(
        sorted({ref.env for ref in loaded.manifest.secret_refs() if isinstance(ref, EnvSecret)})
    )


def chaos_token(state_dir: Path) -> str:
    path = state_dir / "chaos.token"
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        private_dir(state_dir)
        token = secrets.token_urlsafe(24)
        atomic_write(path, token + "\n")
        return token


def routes_for(state: State) -> Routes:
    stable = tuple(r.endpoint for r in state.track("stable") if r.ready)
    canary = tuple(r.endpoint for r in state.track("canary") if r.ready)
    return Routes(
        canary_weight=state.canary_weight if canary else 0,
        stable=stable,
        canary=canary,
        rollout=(state.rollout_id or "") if canary else "",
    )


class HostedTracks:
    """The TrackRuntime of replicas on this machine's loopback, split by `router`."""

    def __init__(self, deps: BackendDeps, router: TrafficRouter, launcher: ReplicaLauncher) -> None:
        self.loaded = deps.loaded
        self.store = deps.store
        self.http = deps.http
        self.progress = deps.progress
        self.processes = deps.processes
        self.router = router
        self.launcher = launcher

    def ensure_platform(self) -> None:
        self.processes.ensure_running()
        if not any(p.name == "nginx" and p.running for p in self.processes.processes()):
            self.progress("starting nginx")
            self.processes.start(self.router.prepare())
        self.router.wait_ready(timeout=ROUTER_READY_S)

    def apply_split(self, state: State) -> None:
        self.router.apply(routes_for(state))

    def reconcile_split(self, state: State) -> str | None:
        """One call to the router's admin (the look asks it anyway): its weight and
        endpoints are the state's, else they are applied again."""
        status = self._router_status()
        if status is None:
            return None  # the router does not answer: track_healthy says so
        want, have = routes_for(state), status.routes
        if have.canary_weight == want.canary_weight and (
            set(have.stable),
            set(have.canary),
        ) == (set(want.stable), set(want.canary)):
            return None
        self.apply_split(state)
        return (
            f"the {self.router.name} router sent the canary {have.canary_weight}% "
            f"({len(have.canary)} canary, {len(have.stable)} stable endpoints), not the "
            f"state's {want.canary_weight}% ({len(want.canary)}, {len(want.stable)}); "
            "restored"
        )

    # --- replicas -------------------------------------------------------------

    def check_version(self, version: str) -> None:
        self.launcher.check_version(version)

    def ensure_track(self, state: State, track: Track, version: str, replicas: int) -> State:
        present = [r for r in state.track(track) if r.version == version]
        for _ in range(replicas - len(present)):
            state = self._start_replica(state, track, version)
        return state

    def _start_replica(self, state: State, track: Track, version: str) -> State:
        taken = {r.port for r in state.replicas}
        if state.prometheus_port:
            taken.add(state.prometheus_port)
        port = free_port(avoid=taken)
        replica = Replica(
            name=f"{track}-{_safe(version)}-{_next_index(state, track, version)}",
            track=track,
            version=version,
            port=port,
        )
        # Recorded before it starts, so an interrupted start is still cleaned up later.
        state = self.store.save(state.with_replica(replica))
        self.progress(f"starting {replica.name} on port {port}")
        self.launcher.start(replica)
        self._wait_healthy(replica)
        return self.store.save(state.with_replica(replica.model_copy(update={"ready": True})))

    def _wait_healthy(self, replica: Replica) -> None:
        service = self.loaded.manifest.service
        url = f"http://{replica.endpoint}{service.health}"
        failure = wait_for_ok(self.http, url, service.start_timeout, interval=0.1)
        if failure is None:
            return
        raise RuntimeProcessError(
            f"{replica.name} failed its health check {url} within "
            f"{format_duration(service.start_timeout)} ({failure})",
            hint=f"see {self.launcher.logs(replica.name)}",
        )

    def replace_stable(self, state: State, version: str) -> State:
        # Idempotent: after an interruption it starts only the replicas still missing
        # and retires only the old ones still there.
        desired = self.loaded.manifest.service.replicas
        while True:
            stable = state.track("stable")
            new = [r for r in stable if r.version == version and r.ready]
            old = [r for r in stable if r.version != version]
            if len(new) >= desired and not old:
                return state
            if len(new) < desired:
                state = self._start_replica(state, "stable", version)
                self.apply_split(state)
            if old:
                state = self._retire(state, [old[0]])

    def retire_track(self, state: State, track: Track) -> State:
        return self._retire(state, state.track(track))

    def _retire(self, state: State, replicas: list[Replica]) -> State:
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
        self.apply_split(state)
        time.sleep(self.loaded.manifest.traffic.drain)
        for replica in replicas:
            self.progress(f"stopping {replica.name}")
            self.launcher.stop(replica.name)
        return self.store.save(state.without(names))

    def reconcile(self, state: State) -> State:
        self.apply_split(state)
        stale = [r for r in state.replicas if not r.ready]
        for replica in stale:
            self.progress(f"cleaning up {replica.name} (interrupted start or stop)")
            self.launcher.stop(replica.name)
        state = self.store.save(state.without({r.name for r in stale}))
        known = {r.name for r in state.replicas}
        for name in self.launcher.inspect():
            if name not in known:
                self.progress(f"stopping orphan process {name}")
                self.launcher.stop(name)
        return state

    # --- what runs ------------------------------------------------------------

    def replicas(self) -> list[ReplicaView]:
        status = self._router_status()
        routed = set(status.routes.stable + status.routes.canary) if status else set()
        down = set(status.down) if status else set()
        running = self.launcher.inspect()
        views = []
        for replica in self.store.load().replicas:
            info = running.get(replica.name)
            views.append(
                ReplicaView(
                    name=replica.name,
                    track=replica.track,
                    version=replica.version,
                    endpoint=replica.endpoint,
                    process=info.state if info else "ABSENT",
                    pid=info.pid if info else 0,
                    healthy=info is not None
                    and info.running
                    and replica.endpoint not in down
                    and self._answers(replica.endpoint),
                    routed=replica.endpoint in routed,
                )
            )
        return views

    def track_healthy(self, state: State, track: Track) -> bool:
        replicas = state.track(track)
        running = self.launcher.inspect()
        status = self._router_status()
        down = set(status.down) if status else set()
        return bool(replicas) and all(
            (info := running.get(r.name)) is not None and info.running and r.endpoint not in down
            for r in replicas
        )

    def _answers(self, endpoint: str) -> bool:
        try:
            url = f"http://{endpoint}{self.loaded.manifest.service.health}"
            return self.http.get(url, timeout=1.0).status_code == 200
        except httpx.HTTPError:
            return False

    def _router_status(self) -> RouterStatus | None:
        try:
            return self.router.current()
        except TrafficError:
            return None

    def routed_weight(self) -> int | None:
        status = self._router_status()
        return status.routes.canary_weight if status else None

    def teardown(self) -> list[int]:
        return self.processes.shutdown()


def _safe(version: str) -> str:
    return version.replace(".", "_")


def _next_index(state: State, track: Track, version: str) -> int:
    prefix = f"{track}-{_safe(version)}-"
    used = [int(r.name.removeprefix(prefix)) for r in state.replicas if r.name.startswith(prefix)]
    return max(used, default=-1) + 1
