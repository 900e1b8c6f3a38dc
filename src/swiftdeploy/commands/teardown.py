"""`swiftdeploy teardown`: stop every process this project started, and forget them."""

from __future__ import annotations

from swiftdeploy.rollout.state import State, StateStore
from swiftdeploy.runtime.base import Runtime


def teardown(runtime: Runtime, store: StateStore) -> list[int]:
    pids = runtime.shutdown()
    store.save(State())
    return pids
