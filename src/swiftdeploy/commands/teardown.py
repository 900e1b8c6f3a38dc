"""`swiftdeploy teardown`: stop everything this project runs, and forget it."""

from __future__ import annotations

from swiftdeploy.fleet import Fleet
from swiftdeploy.state import State


def teardown(fleet: Fleet) -> list[int]:
    pids = fleet.tracks.teardown()
    fleet.store.save(State())
    return pids
