"""cli/project.py: what `status` prints of a rollout (rollout_lines)."""

from __future__ import annotations

from swiftdeploy.cli.project import rollout_lines
from swiftdeploy.state import LastLook, Phase, Replica, State
from swiftdeploy.state.model import HookAnswer, HookWait
from tests.conftest import Project

NOW = 1_000_000.0
CANARY = Replica(name="canary-1", track="canary", version="v2", port=9001, ready=True)


def test_a_rollout_waiting_for_its_pre_rollout_hook_says_so_before_any_look() -> None:
    # Given a canary started and its smoke test asked 30 s ago, no look yet
    state = State(
        phase=Phase.PROGRESSING,
        canary_version="v2",
        step_index=0,
        replicas=(CANARY,),
        awaiting=HookWait(type="pre-rollout", hooks=("smoke",), step=0, since=NOW - 30),
    )
    # Then status says what it waits for, since when, and that no answer came yet
    assert rollout_lines(state, NOW) == [
        "waiting 30 s for hook smoke (pre-rollout) before the canary gets any traffic:"
        " asked, no answer yet"
    ]


def test_a_step_waiting_for_a_confirm_hook_says_which_since_when_and_its_last_answer() -> None:
    # Given step 2 of 3 passed 40 s ago, its confirm hook answered 403 12 s ago
    state = State(
        phase=Phase.PROGRESSING,
        canary_version="v2",
        step_index=1,
        replicas=(CANARY,),
        last_look=LastLook(at=NOW - 2, action="hold", progress=(("errors", "passed"),)),
        message="waiting for the confirm-traffic-increase hook approve to answer 2xx",
        hooks={
            "approve": HookAnswer(
                type="confirm-traffic-increase", result="refused", status=403, at=NOW - 12, step=1
            ),
        },
        awaiting=HookWait(
            type="confirm-traffic-increase", hooks=("approve",), step=1, since=NOW - 40
        ),
    )
    # Then status prints the look and the wait, once
    assert rollout_lines(state, NOW) == [
        "last look 2 s ago: hold",
        "  errors: passed",
        "step 2 passed; waiting 40 s for hook approve (confirm-traffic-increase) before"
        " step 3: HTTP 403 12 s ago",
    ]


def test_status_of_a_project_never_deployed_says_so_not_that_nginx_is_down(
    project: Project,
) -> None:
    done = project.cli("status")
    first = done.stdout.splitlines()[0]
    assert first.endswith("| phase idle | not deployed (`swiftdeploy deploy VERSION`)"), first
    assert "down" not in done.stdout
