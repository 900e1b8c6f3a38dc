"""HostedTracks' split check at every look (local and docker), with a router that
answers from memory: nothing drifted is one read and no write; routes the router lost
or that someone changed are applied again and said in words."""

from __future__ import annotations

from pathlib import Path

import httpx
from bench.support.sim import MemoryStore, SimProcesses, init_manifest

from swiftdeploy.proc import ProcessSpec
from swiftdeploy.runtime.base import BackendDeps
from swiftdeploy.runtime.hosted import HostedTracks, routes_for, secret_env_names
from swiftdeploy.state import Replica, State
from swiftdeploy.traffic.base import RouterStatus, Routes


class MemoryRouter:
    name = "nginx"

    def __init__(self) -> None:
        self.routes = Routes()
        self.applied = 0

    def prepare(self) -> ProcessSpec:
        return ProcessSpec(name="nginx", argv=["true"])

    def check(self) -> None:
        return None

    def wait_ready(self, timeout: float) -> None:
        return None

    def apply(self, routes: Routes) -> None:
        self.routes = routes
        self.applied += 1

    def current(self) -> RouterStatus:
        return RouterStatus(routes=self.routes)

    def close(self) -> None:
        return None

    def read_metrics(self, track: str) -> str:
        return ""

    def read_history(self, track: str, start: int, end: int) -> dict[str, object]:
        return {}


def _state() -> State:
    replicas = (
        Replica(name="stable-v1-0", track="stable", version="v1", port=9001, ready=True),
        Replica(name="canary-v2-0", track="canary", version="v2", port=9002, ready=True),
    )
    return State(replicas=replicas, canary_weight=10, canary_version="v2")


def test_the_split_the_router_lost_or_was_given_is_restored(tmp_path: Path) -> None:
    loaded = init_manifest(tmp_path)
    router = MemoryRouter()
    with httpx.Client() as http:
        deps = BackendDeps(
            loaded, MemoryStore(tmp_path), http, lambda _: None, SimProcesses(), router
        )
        tracks = HostedTracks(deps, router, launcher=None)  # type: ignore[arg-type]
        state = _state()
        tracks.apply_split(state)

        # Given the router routes the state's split: nothing to do, nothing written
        assert tracks.reconcile_split(state) is None
        assert router.applied == 1

        # When someone sets the canary to 100% behind the state's back
        router.routes = router.routes.model_copy(update={"canary_weight": 100})
        drift = tracks.reconcile_split(state)

        # Then it is set back, and said
        assert drift is not None
        assert "sent the canary 100%" in drift
        assert "not the state's 10%" in drift
        assert router.routes == routes_for(state)

        # When the router restarted without its routes (no endpoints at all)
        router.routes = Routes()
        assert tracks.reconcile_split(state) is not None
        assert router.routes == routes_for(state)


def test_the_names_kept_from_replicas_are_the_manifest_s_env_secrets(tmp_path: Path) -> None:
    loaded = init_manifest(
        tmp_path,
        **{
            "notifications": {
                "signing_key": {"env": "SD_KEY"},
                "sinks": [{"name": "log", "kind": "webhook", "url": {"env": "LOG_URL"},
                           "headers": {"Authorization": {"env": "LOG_TOKEN"}}}],
            },
            "hooks": [{"name": "smoke", "type": "pre-rollout", "url": "http://127.0.0.1:9/s"}],
        },
    )  # fmt: skip
    assert secret_env_names(loaded) == ("LOG_TOKEN", "LOG_URL", "SD_KEY")
