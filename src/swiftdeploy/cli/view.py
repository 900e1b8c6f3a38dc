"""The rollout's live view: a rich table on a terminal, one line per look otherwise, or
(`--json`) one JSON object per look and a summary for CI. Text from the canary (its
metrics' details, the policy's reasons that quote them) is never read as markup."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.live import Live
from rich.markup import escape
from rich.table import Table

from swiftdeploy.metrics.base import Measurement
from swiftdeploy.rollout.engine import TickReport
from swiftdeploy.rollout.statistics import progress
from swiftdeploy.state import State


def _track(m: Measurement | None) -> str:
    if m is None:
        return "-"
    rate = f"{m.error_rate:.2%}" if m.error_rate is not None else "-"
    p99 = m.latency_ms(0.99)
    latency = f"{p99:.0f}ms" if p99 is not None else "-"
    status = "" if m.ok else f" [{m.status}]"
    return f"{m.requests} req, 5xx {m.errors} ({rate}), p99 {latency}{status}"


def describe(report: TickReport) -> dict[str, str]:
    state = report.state
    reasons = "; ".join(r.message for r in report.decision.reasons) if report.decision else ""
    fields = {
        "step": f"{(state.step_index or 0) + 1} at {state.canary_weight}%",
        "time in step": f"{report.elapsed_s:.0f}s",
        "canary": _track(report.canary),
        "stable": _track(report.stable),
    }
    fields.update(progress(report.statistics))
    fields["decision"] = f"{report.action}" + (f": {reasons}" if reasons else "")
    return fields


def look_json(report: TickReport) -> dict[str, Any]:
    """One look for CI: step, weight, both tracks' numbers, the statistics, the decision."""
    state = report.state
    return {
        "look": "decision",
        "rollout_id": state.rollout_id,
        "step": (state.step_index or 0) + 1,
        "weight": state.canary_weight,
        "elapsed_s": round(report.elapsed_s, 3),
        "canary": report.canary.model_dump(mode="json") if report.canary else None,
        "stable": report.stable.model_dump(mode="json") if report.stable else None,
        "statistics": report.statistics,
        "decision": report.decision.model_dump(mode="json") if report.decision else None,
        "action": report.action,
    }


def json_line(state: State, message: str, exit_code: int) -> dict[str, Any]:
    """The summary after the last look, with the exit code the command returns."""
    return {
        "look": "summary",
        "rollout_id": state.rollout_id,
        "phase": state.phase.value,
        "stable_version": state.stable_version,
        "canary_version": state.canary_version,
        "canary_weight": state.canary_weight,
        "message": message,
        "exit_code": exit_code,
    }


class RolloutView:
    def __init__(self, console: Console, title: str, *, enabled: bool = True) -> None:
        self.console = console
        self.title = title
        self.live: Live | None = None
        if enabled and console.is_terminal:
            self.live = Live(console=console, auto_refresh=False)

    def __enter__(self) -> RolloutView:
        if self.live is not None:
            self.live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.live is not None:
            self.live.__exit__(None, None, None)

    def update(self, report: TickReport) -> None:
        fields = describe(report)
        if self.live is None:
            self.console.print(" | ".join(f"{k}: {v}" for k, v in fields.items()), markup=False)
            return
        table = Table(title=escape(self.title), show_header=False)
        for key, value in fields.items():
            table.add_row(escape(key), escape(value))
        self.live.update(table, refresh=True)
