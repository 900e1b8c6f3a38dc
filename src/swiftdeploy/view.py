"""The rollout's live view: a rich table on a terminal, one line per look otherwise."""

from __future__ import annotations

from rich.console import Console
from rich.live import Live
from rich.table import Table

from swiftdeploy.metrics.base import Measurement
from swiftdeploy.rollout.engine import TickReport
from swiftdeploy.rollout.statistics import progress


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


class RolloutView:
    def __init__(self, console: Console, title: str) -> None:
        self.console = console
        self.title = title
        self.live: Live | None = None
        if console.is_terminal:
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
        table = Table(title=self.title, show_header=False)
        for key, value in fields.items():
            table.add_row(key, value)
        self.live.update(table, refresh=True)
