"""The words the trail's records use, declared once: the engine writes them and the
review (`swiftdeploy.review`) reads them, so both import them from here.

A record names a look's action (`decision` records), the phases of a transition
(`phase_before`, `phase_after`: `state.Phase`) and the rules of a decision's reasons,
among them those a policy engine makes up when it cannot decide (`policy.base`).
"""

from __future__ import annotations

from swiftdeploy.policy.base import FAILURE_RULES
from swiftdeploy.state import Phase

__all__ = [
    "ENDED_PHASES",
    "ENGINE_ACTIONS",
    "FAILURE_RULES",
    "HELD",
    "HOLD",
    "LIVE_PHASES",
    "PROMOTE",
    "ROLLBACK",
    "ROLLBACK_PREFIX",
    "Phase",
]

# A look's action as the rollout engine records it: the policy's verdict, or HELD when
# the step reached its max_duration undecided and waits for a person. A gate's action is
# what a person asked for instead (the record also names it as `requested`).
PROMOTE = "promote"
HOLD = "hold"
ROLLBACK = "rollback"
HELD = "held"
ENGINE_ACTIONS = frozenset({PROMOTE, HOLD, ROLLBACK, HELD})
# How a transition to rolling-back begins its reason: `rollback: <cause>`.
ROLLBACK_PREFIX = "rollback: "

# The phases a rollout ends in: its outcome.
ENDED_PHASES = frozenset({Phase.PROMOTED, Phase.ROLLED_BACK, Phase.FAILED})
# The phases in which the canary takes its step's traffic; other transitions (promoting,
# rolling back, done) may carry the step index and a weight of 0 or 100 on their way
# out, which is no step of the rollout.
LIVE_PHASES = frozenset({Phase.PROGRESSING, Phase.PAUSED})
