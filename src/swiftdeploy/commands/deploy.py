"""`swiftdeploy deploy`: the first deploy, or a plain rolling replace of the stable version."""

from __future__ import annotations

from swiftdeploy.errors import StateError
from swiftdeploy.fleet import Fleet
from swiftdeploy.state import Phase, State


def deploy(fleet: Fleet, version: str) -> State:
    state = fleet.store.load()
    if state.track("canary"):
        raise StateError(
            f"a canary ({state.canary_version}) is running",
            hint="finish it with `swiftdeploy promote --all` or `swiftdeploy rollback` first",
        )
    fleet.tracks.check_version(version)
    state = fleet.reconcile(state)  # after an interrupted command: routes match the state
    if (
        state.track("stable")
        and state.stable_version == version
        and all(r.ready for r in state.track("stable"))
    ):
        fleet.progress(f"{version} is already the stable version")
        return state
    if not state.track("stable"):
        count = fleet.loaded.manifest.service.replicas
        state = fleet.ensure_track(state, "stable", version, count)
        state = fleet.store.save(state.model_copy(update={"stable_version": version}))
        fleet.apply_routes(state)
    else:
        state = fleet.replace_stable(state, version)
    return fleet.transition(state, f"{version} deployed as stable", phase=Phase.IDLE)
