"""Whether a saved state is one the trail's transitions reached (issue 21, case 7).

Every phase change is recorded before it is saved (`Fleet.transition`), so a state that
swiftdeploy wrote matches the after-side of the last transition record, or of the one
before it that left another state (a crash, or an API server that did not answer,
between recording a transition and saving it; the transition is then recorded again).
Anyone who can edit the state's store but not append to the trail (a namespace editor
and the state ConfigMap) can only write a state that matches neither: its phase,
rollout id or versions were reached by no recorded transition, and the driver refuses
to act on it.

What is compared: the phase and the rollout id exactly; the canary version exactly (or
none, while promoting or rolling back, once the canary is retired); the stable version
is the recorded stable or canary version (a promotion replaces the stable before its
last transition). An empty state (teardown, or nothing ever done) acts on nothing and
is always accepted.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from swiftdeploy.state import Phase, State

REFUSED = "state-refused"  # the record the driver writes when it refuses a state
_ENDING = frozenset({Phase.PROMOTING.value, Phase.ROLLING_BACK.value})
# What a transition leaves, as far as the state check compares it.
AFTER = ("phase_after", "rollout_id", "stable_version", "canary_version")


def _matches(state: State, transition: Mapping[str, Any]) -> bool:
    if transition.get("phase_after") != state.phase.value:
        return False
    if transition.get("rollout_id") != state.rollout_id:
        return False
    canary = transition.get("canary_version")
    retired = state.canary_version is None and state.phase.value in _ENDING
    if state.canary_version != canary and not retired:
        return False
    return state.stable_version in (transition.get("stable_version"), canary)


def _after(transition: Mapping[str, Any]) -> tuple[Any, ...]:
    return tuple(transition.get(key) for key in AFTER)


def _recent(transitions: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The last transition and the last one before it that left another state, oldest
    first: a transition recorded again (its first save failed) is one."""
    found: list[Mapping[str, Any]] = []
    for transition in reversed(transitions):
        if not found or _after(transition) != _after(found[0]):
            found.insert(0, transition)
        if len(found) == 2:
            break
    return found


def state_problem(state: State, transitions: Sequence[Mapping[str, Any]]) -> str | None:
    """Why `state` was not written by swiftdeploy (None when a transition reached it).
    `transitions`: the trail's transition records, oldest first (the last few suffice)."""
    if state.phase == Phase.IDLE and state.rollout_id is None and state.canary_version is None:
        return None
    recent = _recent(transitions)
    if any(_matches(state, transition) for transition in recent):
        return None
    said = (
        f"phase {state.phase.value}, rollout {state.rollout_id or '-'}, stable "
        f"{state.stable_version or '-'}, canary {state.canary_version or '-'}"
    )
    if not recent:
        return f"the state says {said}, but the audit trail records no transition to it"
    last = recent[-1]
    return (
        f"the state says {said}, but the audit trail's last transition (record "
        f"{last.get('seq')}, {last.get('ts')}) left phase {last.get('phase_after')}, rollout "
        f"{last.get('rollout_id') or '-'}, stable {last.get('stable_version') or '-'}, canary "
        f"{last.get('canary_version') or '-'}: no recorded transition reached it, so it was "
        "changed outside swiftdeploy"
    )
