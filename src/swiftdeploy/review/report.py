"""The audit report: Markdown and self-contained HTML, one section per rollout.

The HTML has no external resource: its CSS is inline and its charts are inline SVG
(see charts.py for why not matplotlib); it has no script. Its template is
`templates/report.html.j2`. The Markdown report links the same SVG charts, written
next to it in `charts/`. A chart with nothing to plot is left out, with one line
saying why.

`why` (why.py) and `export` (export.py) are importable from here too, as they were
before they had modules of their own.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from jinja2 import Environment, Template
from markupsafe import Markup

from swiftdeploy import __version__
from swiftdeploy.audit.log import FILE_MODE, Record
from swiftdeploy.audit.looks import expand, label
from swiftdeploy.audit.vocabulary import HOLD
from swiftdeploy.durations import format_duration
from swiftdeploy.errors import BadInputError, StateError
from swiftdeploy.fsutil import UnsafeDirError, atomic_write_at, open_own_dir, own_dir
from swiftdeploy.review import charts
from swiftdeploy.review.explain import (
    DecisionView,
    ReasonView,
    Rollout,
    actor,
    chaos_summary,
    decision_of,
    decision_runs,
    ms,
    pct,
    record_at,
    rollouts,
    run_sentence,
    run_summary,
    runs,
    show_ts,
    slug,
    summary,
    violations,
)
from swiftdeploy.review.export import CSV_COLUMNS, EXPORT_FORMATS, export
from swiftdeploy.review.why import pick_rollout, why

__all__ = [
    "CHART_DIR",
    "CSV_COLUMNS",
    "EXPORT_FORMATS",
    "HTML_NAME",
    "MD_NAME",
    "export",
    "pick_rollout",
    "why",
    "write_report",
]

MD_NAME = "audit_report.md"
HTML_NAME = "audit_report.html"
CHART_DIR = "charts"
TEMPLATE = "report.html.j2"
NO_STEP = "No step took traffic: the canary ended before any record gave it a weight."


@dataclass(frozen=True)
class RolloutSection:
    rollout: Rollout
    anchor: str
    why: list[str]
    reason: str  # the decisive decision in one sentence
    decisions: list[tuple[DecisionView, str]]  # (first, sentence) per decision or run of holds
    charts: list[tuple[charts.Chart, str, str]]  # (chart, svg text, file name)
    chart_note: str  # why a chart is missing, or ""


def _marker_kind(decision: DecisionView) -> str:
    """What a decision marker shows: the engine's verdict, a hold at max_duration, or
    a person's command through the canary gate."""
    if decision.action == "refused":
        return "refused"
    if decision.by_hand:
        return "by hand"
    return decision.action if decision.action in charts.VERDICT_COLORS else decision.verdict


def _chart_set(rollout: Rollout) -> tuple[list[charts.Chart], str]:
    """The charts with something to plot, and a line on those left out."""
    decisions = [d for d in rollout.decisions if d.canary.status is not None or d.statistics]
    boundaries = [
        charts.Boundary(rollout.offset(step.start), step.name.replace(" of traffic", ""))
        for step in rollout.steps
    ]
    boundaries += [
        charts.Boundary(
            rollout.offset(record_at(record)),
            "chaos recovered" if record.get("recover") else "chaos",
            kind="chaos",
            detail=chaos_summary(record),
        )
        for record in rollout.chaos
    ]
    decisive = rollout.decisive

    def series(track: str, metric: str, scale: float) -> list[tuple[float, float]]:
        points = []
        for decision in decisions:
            data = decision.canary if track == "canary" else decision.stable
            value = getattr(data, metric)
            if data.usable and value is not None:
                points.append((rollout.offset(decision.at), value * scale))
        return points

    def markers(metric: str, scale: float) -> list[charts.Marker]:
        out = []
        for decision in decisions:
            value = getattr(decision.canary, metric)
            y = value * scale if value is not None and decision.canary.usable else 0.0
            out.append(
                charts.Marker(
                    rollout.offset(decision.at),
                    y,
                    _marker_kind(decision),
                    f"{decision.outcome}: {decision.sentence()}",
                    final=decision is decisive and decision.action != HOLD,
                )
            )
        return out

    name = slug(rollout.rollout_id)

    def track_chart(
        metric: str,
        scale: float,
        key: str,
        title: str,
        y_label: str,
        y_format: str,
        threshold: tuple[float, str] | None,
    ) -> charts.Chart:
        """Both tracks' `metric` (times `scale`) over the rollout, with the steps, the
        chaos and the policy's looks; `key` names the chart in the page."""
        return charts.Chart(
            chart_id=f"{name}-{key}",
            title=f"{title} per track, rollout {rollout.rollout_id}",
            y_label=y_label,
            y_format=y_format.format,
            series=[
                charts.Series("stable", charts.STABLE_COLOR, series("stable", metric, scale)),
                charts.Series("canary", charts.CANARY_COLOR, series("canary", metric, scale)),
            ],
            boundaries=boundaries,
            markers=markers(metric, scale),
            threshold=threshold,
        )

    thresholds = decisions[-1].thresholds if decisions else {}
    max_error = thresholds.get("max_error_rate")
    max_p99 = thresholds.get("max_p99_ms")
    error_limit = (
        (max_error * 100, f"max {pct(max_error)}") if isinstance(max_error, int | float) else None
    )
    p99_limit = (float(max_p99), f"max {ms(max_p99)}") if isinstance(max_p99, int | float) else None
    error_rate = track_chart(
        "error_rate", 100, "error-rate", "Error rate", "error rate (%)", "{:g}%", error_limit
    )
    p99 = track_chart("p99_ms", 1, "p99", "p99 latency", "p99 latency (ms)", "{:g} ms", p99_limit)
    kept = [chart for chart in (error_rate, p99) if chart.has_data]
    return kept, _chart_note(rollout, error_rate, p99)


def _chart_note(rollout: Rollout, error_rate: charts.Chart, p99: charts.Chart) -> str:
    if error_rate.has_data and p99.has_data:
        return ""
    if not rollout.decisions:
        return "No charts: the policy never looked at this canary, so nothing was measured."
    if not error_rate.has_data and not p99.has_data:
        return "No charts: no look at this canary had a usable measurement of either track."
    if not p99.has_data:
        return "No p99 latency chart: no look at this canary measured a p99 (no latency histogram)."
    return "No error-rate chart: no look at this canary measured an error rate."


def _sections(records: Sequence[Record]) -> list[RolloutSection]:
    sections = []
    for rollout in rollouts(records):
        kept, note = _chart_set(rollout)
        rendered = [(chart, charts.render(chart), f"{chart.chart_id}.svg") for chart in kept]
        lines = why(records, rollout.rollout_id)
        sections.append(
            RolloutSection(
                rollout=rollout,
                anchor=f"rollout-{slug(rollout.rollout_id)}",
                why=lines,
                reason=_one_reason(rollout, lines),
                decisions=[(run[0], run_sentence(run)) for run in decision_runs(rollout)],
                charts=rendered,
                chart_note=note,
            )
        )
    return sections


def _one_reason(rollout: Rollout, why_lines: list[str]) -> str:
    if rollout.manual_command is not None and len(why_lines) > 1:
        return why_lines[1]
    decisive = rollout.decisive
    return decisive.sentence() if decisive else why_lines[-1]


def _timeline_row(group: list[Record]) -> dict[str, Any]:
    """One record, or a run of the same hold in one row."""
    first, last = group[0], group[-1]
    row = {
        "ts": first.get("ts", ""),
        "kind": first.get("kind", ""),
        "rollout": first.get("rollout_id") or "",
        "actor": actor(first),
        "summary": summary(first),
        "seq": label(first) or "",
    }
    if len(group) > 1:
        views = [d for r in group if (d := decision_of(r)) is not None]
        row.update(summary=run_summary(views), seq=f"{label(first) or ''}-{label(last) or ''}")
    return row


def _context(records: Sequence[Record], rollout_id: str | None) -> dict[str, Any]:
    records = expand(records)  # looks records as their looks in full
    if rollout_id is not None:
        pick_rollout(records, rollout_id)  # a clear error for an unknown id
        records = [r for r in records if r.get("rollout_id") == rollout_id]
    timeline = [_timeline_row(group) for group in runs(records)]
    found: list[tuple[DecisionView, ReasonView]] = violations(records)
    chaos = [
        {"ts": r.get("ts", ""), "rollout": r.get("rollout_id") or "", "actor": actor(r),
         "summary": chaos_summary(r)}
        for r in records if r.get("kind") == "chaos"
    ]  # fmt: skip
    last = records[-1] if records else {}
    return {
        "generated": show_ts(datetime.now(UTC)),
        "version": __version__,
        "records": len(records),
        "first_ts": records[0].get("ts", "") if records else "",
        "last_ts": last.get("ts", ""),
        "head": last.get("hash", ""),
        "rollout_filter": rollout_id,
        "sections": _sections(records),
        "violations": [
            {
                "ts": d.record.get("ts", ""),
                "rollout": d.rollout_id or "",
                "step": d.step_name,
                "package": d.package,
                "rule": r.rule,
                "facts": r.facts(),
                "sentence": d.reason_sentence(r),
                "engine_failure": d.failed,
            }
            for d, r in found
        ],
        "chaos": chaos,
        "timeline": timeline,
    }


def write_report(
    records: Sequence[Record], out_dir: Path, rollout_id: str | None = None
) -> tuple[Path, Path]:
    """Write `audit_report.md` (+ `charts/*.svg`) and a self-contained `audit_report.html`.

    The CLI may run as root with `--out` in a shared directory such as /tmp: `out_dir`
    and `charts/` are opened once, never through another user's symbolic link nor if
    another user owns them, and every file is written relative to them (issue 22). A
    new directory is private (0700); an existing one of yours (`--out .`) is left as
    it is."""
    context = _context(list(records), rollout_id)
    chart_path = out_dir / CHART_DIR
    md_path, html_path = out_dir / MD_NAME, out_dir / HTML_NAME
    where = out_dir  # the directory being opened, for the message
    try:
        with own_dir(out_dir) as out_fd:
            where = chart_path
            chart_fd = open_own_dir(CHART_DIR, dir_fd=out_fd)
            try:
                for section in context["sections"]:
                    for _, svg, name in section.charts:
                        atomic_write_at(
                            chart_fd, name, svg + "\n", FILE_MODE, shown=chart_path / name
                        )
            finally:
                os.close(chart_fd)
            atomic_write_at(out_fd, MD_NAME, _markdown(context), FILE_MODE, shown=md_path)
            atomic_write_at(out_fd, HTML_NAME, _html(context), FILE_MODE, shown=html_path)
    except UnsafeDirError as exc:
        raise BadInputError(
            f"refusing to write the report in {where}: it {exc}",
            hint="give --out a directory of your own, or a new name (made 0700)",
        ) from None
    except OSError as exc:
        raise StateError(f"cannot write the report in {where}: {exc.strerror or exc}") from exc
    return md_path, html_path


def _md_cell(value: object) -> str:
    return str(value).replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def _md_table(header: Sequence[str], rows: Iterable[Sequence[object]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    out += ["| " + " | ".join(_md_cell(cell) for cell in row) + " |" for row in rows]
    return out


def _markdown(context: dict[str, Any]) -> str:
    out = [
        "# SwiftDeploy audit report",
        "",
        f"Generated {context['generated']} by swiftdeploy {context['version']} from "
        f"{context['records']} audit records ({context['first_ts']} to {context['last_ts']}).",
        f"Chain head: `{context['head']}`.",
        "",
        "## Rollouts",
        "",
    ]
    sections: list[RolloutSection] = context["sections"]
    out += _md_table(
        ["rollout", "versions", "started", "steps", "outcome"],
        [
            [s.rollout.rollout_id, s.rollout.versions or "-", show_ts(s.rollout.start),
             len(s.rollout.steps), s.rollout.outcome]
            for s in sections
        ],
    )  # fmt: skip
    if not sections:
        out.append("\nNo rollout was recorded.")
    for section in sections:
        rollout = section.rollout
        out += ["", f"## Rollout {rollout.rollout_id}: {rollout.outcome}", ""]
        out += [f"- {line}" for line in section.why]
        out += ["", "### Steps", ""]
        if not rollout.steps:
            out.append(NO_STEP)
        else:
            out += _md_table(
                ["step", "started", "decisions", "last verdict", "why"],
                [
                    [step.name, f"+{format_duration(rollout.offset(step.start))}",
                     len(step.decisions),
                     step.last.verdict if step.last else "-",
                     step.last.sentence() if step.last else "-"]
                    for step in rollout.steps
                ],
            )  # fmt: skip
        out += ["", "### Charts", ""]
        out += [f"![{chart.title}]({CHART_DIR}/{name})" for chart, _, name in section.charts]
        if section.chart_note:
            out.append(section.chart_note)
        out += ["", "### Gate decisions", ""]
        if not rollout.decisions:
            out.append("None.")
        else:
            out += _md_table(
                ["time", "step", "policy", "verdict", "reasons"],
                [
                    [show_ts(d.at), d.step_name, d.package, d.verdict, sentence]
                    for d, sentence in section.decisions
                ],
            )
    out += ["", "## Policy violations", ""]
    if context["violations"]:
        out += _md_table(
            ["time", "rollout", "step", "policy", "rule", "observed / threshold", "in words"],
            [[v["ts"], v["rollout"], v["step"], v["package"], v["rule"], v["facts"],
              v["sentence"]] for v in context["violations"]],
        )  # fmt: skip
    else:
        out.append("None.")
    out += ["", "## Chaos events", ""]
    if context["chaos"]:
        out += _md_table(
            ["time", "rollout", "who", "what"],
            [[c["ts"], c["rollout"], c["actor"], c["summary"]] for c in context["chaos"]],
        )
    else:
        out.append("None.")
    out += ["", "## Timeline", ""]
    out += _md_table(
        ["seq", "time", "kind", "rollout", "who", "what"],
        [[t["seq"], t["ts"], t["kind"], t["rollout"], t["actor"], t["summary"]]
         for t in context["timeline"]],
    )  # fmt: skip
    return "\n".join(out) + "\n"


@cache
def _template() -> Template:
    text = resources.files("swiftdeploy.review").joinpath("templates", TEMPLATE).read_text()
    env = Environment(autoescape=True, trim_blocks=True, lstrip_blocks=True)
    return env.from_string(text)


def _html(context: dict[str, Any]) -> str:
    # Markup: the SVG text comes from charts.render, which escapes every string in it.
    return _template().render(
        svg=Markup, show_ts=show_ts, format_duration=format_duration, no_step=NO_STEP, **context
    )
