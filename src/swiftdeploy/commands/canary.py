"""`swiftdeploy canary VERSION`: start canary replicas and send them a share of traffic.

Its evidence is counted from the start as in a rollout, so a later `promote` or
`weight` is gated on what the canary actually served."""

from __future__ import annotations

import uuid

from swiftdeploy.errors import BadInputError
from swiftdeploy.rollout.engine import RolloutEngine
from swiftdeploy.state import Phase, State


def start_canary(engine: RolloutEngine, version: str, weight: int | None) -> State:
    fleet = engine.fleet
    strategy = fleet.loaded.manifest.strategy.canary
    if weight is not None and not 0 <= weight <= 100:
        raise BadInputError(f"--weight {weight} is outside 0-100")
    state = fleet.reconcile(fleet.store.load())  # an interrupted start leaves no trace
    fleet.require_canary_can_start(state, version)
    state = fleet.transition(
        state.model_copy(update={"rollout_id": uuid.uuid4().hex[:12]}),
        f"canary {version} started by hand",
        "canary",
        canary_version=version,
        canary_weight=0,
        phase=Phase.PROGRESSING,
        step_index=0,
        auto_advance=False,
        evidence=engine.new_evidence(),
    )
    state = engine.canary_started(fleet.ensure_track(state, "canary", version, strategy.replicas))
    target = strategy.steps[0].weight if weight is None else weight
    state = fleet.store.save(state.model_copy(update={"canary_weight": target}))
    fleet.apply_routes(state)
    return engine.watch(state, 0, target)
