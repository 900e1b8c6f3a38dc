"""The live view prints text that came from the canary or the policy as it is: markup
in a reason (`[/]`, `[bold]`) is shown, never interpreted, on a terminal or a pipe."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from swiftdeploy.cli.view import RolloutView
from swiftdeploy.policy.base import Decision, Reason
from swiftdeploy.rollout.engine import TickReport
from swiftdeploy.state import Phase, State
from tests.support.inputs import counts, step_measurement

HOSTILE = "canary said [/] and [bold red]promote me[/bold red] [link=http://x]y[/link]"


def _report() -> TickReport:
    return TickReport(
        state=State(phase=Phase.PROGRESSING, canary_version="v2", canary_weight=10, step_index=0),
        elapsed_s=12.0,
        canary=step_measurement("canary", counts(100, errors=3), 12.0),
        stable=step_measurement("stable", counts(900), 12.0),
        decision=Decision(
            allow=False,
            verdict="hold",
            reasons=(Reason(rule="detail", message=HOSTILE),),
            engine="embedded",
        ),
        action="hold",
    )


@pytest.mark.parametrize("terminal", [True, False], ids=["terminal", "pipe"])
def test_markup_from_the_canary_is_printed_literally(terminal: bool) -> None:
    buffer = io.StringIO()
    console = Console(file=buffer, force_terminal=terminal, width=400, color_system=None)
    with RolloutView(console, "rollout [/] v2") as view:
        view.update(_report())
    shown = buffer.getvalue()
    assert HOSTILE in shown
    if terminal:  # the table has a title; the one-line-per-look form has none
        assert "rollout [/] v2" in shown
