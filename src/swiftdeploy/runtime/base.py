"""The runtime interfaces.

Two levels: a `ProcessManager` keeps named local processes alive (supervisord: the
platform's nginx, OPA and Prometheus, and the local backend's replicas), and a
`TrackRuntime` runs whole tracks: a version with N replicas, ready or not, and the
split between the tracks. The track level is what a local supervisord, Docker and
Kubernetes (Deployments behind readiness) have in common; the rollout only speaks it.

A backend is a module with the functions of `Backend`, found by name in
`swiftdeploy.runtime.backend`.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from swiftdeploy.proc import ProcessSpec

if TYPE_CHECKING:
    import httpx

    from swiftdeploy.manifest import LoadedManifest
    from swiftdeploy.state import State, StateStore, Track
    from swiftdeploy.traffic.base import TrafficRouter


@dataclass(frozen=True)
class ProcessInfo:
    name: str
    state: str  # supervisord's words: RUNNING, STARTING, BACKOFF, EXITED, FATAL, STOPPED
    pid: int

    @property
    def running(self) -> bool:
        return self.state == "RUNNING"


# The rollout's driver, as the project's process manager names it (commands/driver.py).
DRIVER_PROCESS = "driver"


class ProcessManager(Protocol):
    name: str

    def ensure_running(self) -> None:
        """Start the process manager if it is not running."""
        ...

    def start(self, spec: ProcessSpec) -> ProcessInfo: ...

    def stop(self, name: str) -> None:
        """Stop and forget a process; stopping an unknown one is a no-op."""
        ...

    def processes(self) -> list[ProcessInfo]: ...

    def shutdown(self) -> list[int]:
        """Stop everything, the manager too; return every pid that was stopped."""
        ...

    def is_running(self) -> bool: ...


@dataclass(frozen=True)
class ReplicaView:
    """One replica as `status` shows it and the rollout judges it."""

    name: str
    track: str
    version: str
    endpoint: str
    process: str  # the backend's word for its state (supervisord: RUNNING, ...); ABSENT
    pid: int  # 0 where there is no local process
    healthy: bool  # running and answering its health check
    routed: bool  # the router sends it traffic


class TrackRuntime(Protocol):
    """Tracks of replicas and the split between them.

    Every method that changes replicas takes the persisted state and returns it as
    saved after the change, so an interrupted call leaves a state `reconcile` can
    carry on from.
    """

    def ensure_platform(self) -> None:
        """What serves the tracks is up (for the local backend: supervisord and nginx,
        nginx serving the persisted routes)."""
        ...

    def check_version(self, version: str) -> None:
        """Raise BadInputError, before anything starts, when `version` cannot run here
        (for containers on this engine: its image is not there)."""
        ...

    def ensure_track(self, state: State, track: Track, version: str, replicas: int) -> State:
        """`replicas` ready replicas of `track` at `version`: starts the missing ones and
        waits until they are healthy; raises RuntimeProcessError saying why one never
        became ready. New replicas get no traffic until `apply_split`."""
        ...

    def replace_stable(self, state: State, version: str) -> State:
        """Replace the stable replicas with `version` without dropping a request: each
        new one ready and routed before an old one drains and stops. Resumable."""
        ...

    def retire_track(self, state: State, track: Track) -> State:
        """Take the track's replicas out of the routes, let in-flight requests finish,
        then stop them."""
        ...

    def apply_split(self, state: State) -> None:
        """Route the state's weight between the tracks' ready replicas."""
        ...

    def reconcile_split(self, state: State) -> str | None:
        """Once per look: the split the traffic takes is the state's. Where it drifted
        (someone edited or deleted the route, a router restarted without its routes),
        restore the state's and return what was found, in words; None when it was the
        state's, or where nothing can drift. Cheap: a look pays for it every time."""
        ...

    def reconcile(self, state: State) -> State:
        """Make the world match the state after an interruption (even kill -9): the
        routes are the state's, and nothing runs that the state does not route."""
        ...

    def replicas(self) -> list[ReplicaView]: ...

    def track_healthy(self, state: State, track: Track) -> bool:
        """The track has replicas and every one of them runs and is not marked down by
        the router: what each look asks, so it costs no request to the replicas."""
        ...

    def routed_weight(self) -> int | None:
        """The canary weight the router applies now; None when it cannot be asked."""
        ...

    def teardown(self) -> list[int]:
        """Stop everything the project runs; return the pids stopped."""
        ...


@dataclass(frozen=True)
class BackendDeps:
    """What a backend's tracks need, built once per command by `commands.context.open_fleet`."""

    loaded: LoadedManifest
    store: StateStore
    http: httpx.Client
    progress: Callable[[str], None]
    processes: ProcessManager
    router: TrafficRouter | None  # present exactly when the backend is NGINX_ROUTED


@dataclass(frozen=True)
class Check:
    """One line of `swiftdeploy doctor`."""

    part: str
    ok: bool
    detail: str


class Backend(Protocol):
    """A runtime backend: a module of these functions (see `runtime/local.py`)."""

    # Its tracks are split by the nginx router (validate then checks nginx's config).
    NGINX_ROUTED: bool
    # Its rollouts are driven by a driver under this machine's supervisor, which
    # outlives the CLI (commands/driver.py); False: by the driver in the cluster
    # (kubernetes: `swiftdeploy kube install`), which CLIs on any machine steer.
    HOST_DRIVER: bool

    def create_tracks(self, deps: BackendDeps) -> TrackRuntime: ...

    def process_manager(self, loaded: LoadedManifest) -> ProcessManager:
        """The manager of the project's platform processes (nginx, OPA, Prometheus)."""
        ...

    def preflight(self, loaded: LoadedManifest) -> list[str]:
        """What `validate` checks before anything starts; returns what was checked and
        raises BadInputError, naming the field, on the first problem."""
        ...

    def doctor(self, loaded: LoadedManifest | None) -> list[Check]:
        """The backend's parts for `doctor`; without a manifest, what can be checked."""
        ...

    def state_store(self, loaded: LoadedManifest) -> StateStore: ...

    def shared_lock(self, loaded: LoadedManifest) -> AbstractContextManager[None]:
        """Held with the project lock by every mutating command: what keeps two
        machines from driving the same tracks at once."""
        ...
