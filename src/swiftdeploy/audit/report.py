"""Reports over the audit trail: Markdown and self-contained HTML, `why`, and exports.

The HTML has no external resource: its CSS is inline and its charts are inline SVG
(see charts.py for why not matplotlib); it has no script. The Markdown report links
the same SVG charts, written next to it in `charts/`.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from jinja2 import Environment
from markupsafe import Markup

from swiftdeploy import __version__
from swiftdeploy.audit import charts
from swiftdeploy.audit.explain import (
    RULE_TEST,
    Decision,
    Reason,
    Rollout,
    actor,
    as_mapping,
    chaos_summary,
    decision_of,
    ms,
    parse_ts,
    pct,
    rollouts,
    show_ts,
    slug,
    summary,
    violations,
)
from swiftdeploy.audit.log import FILE_MODE, Record
from swiftdeploy.errors import BadInputError
from swiftdeploy.fsutil import atomic_write, private_dir

EXPORT_FORMATS = ("json", "csv", "opa-decision-log")
MD_NAME = "audit_report.md"
HTML_NAME = "audit_report.html"
CHART_DIR = "charts"


# --- why ------------------------------------------------------------------------------


def pick_rollout(records: Sequence[Record], rollout_id: str | None = None) -> Rollout:
    """The given rollout, or the one that started last."""
    found = rollouts(records)
    if not found:
        raise BadInputError(
            "the audit trail has no rollout yet",
            hint="records get a rollout id from `swiftdeploy canary`",
        )
    if rollout_id is None:
        return found[-1]
    for rollout in found:
        if rollout.rollout_id == rollout_id:
            return rollout
    known = ", ".join(r.rollout_id for r in found[-5:])
    raise BadInputError(f"no rollout {rollout_id!r} in the audit trail", hint=f"recent: {known}")


def why(records: Sequence[Record], rollout_id: str | None = None) -> list[str]:
    """A few lines on why the last (or given) rollout ended as it did: the rule, the
    observed value, the threshold and the statistic behind the decision."""
    rollout = pick_rollout(records, rollout_id)
    lines = [_headline(rollout)]
    decisive = rollout.decisive
    manual = rollout.manual_command
    prefix = ""
    if manual is not None and (decisive is None or decisive.at <= _at(manual)):
        command = " ".join(str(word) for word in manual.get("command", []))
        lines.append(
            f"{rollout.outcome} by hand: `{command}` by {actor(manual)} at {manual.get('ts')}"
        )
        decisive = rollout.decisions[-1] if rollout.decisions else None
        prefix = "the last gate decision before that: "
    if decisive is None:
        if manual is None:
            lines.append("no policy decision was recorded for this rollout")
        return lines
    lines.append(
        f"{prefix}decision {decisive.decision_id or decisive.record.get('id')} by the "
        f"{decisive.engine} engine ({decisive.package}) at {decisive.step_name}, "
        f"{rollout.offset(decisive.at):.0f} s into the rollout: {decisive.outcome}"
    )
    lines.extend(
        f"{reason.facts()}: {decisive.reason_sentence(reason)}"
        for reason in decisive.ordered_reasons()
    )
    lines.extend(f"statistic: {text}" for text in _statistics(decisive))
    return lines


def _at(record: Record) -> datetime:
    return parse_ts(record.get("ts")) or datetime.min.replace(tzinfo=UTC)


def _headline(rollout: Rollout) -> str:
    steps = len(rollout.steps)
    where = f" at {rollout.steps[-1].name}" if rollout.steps else ""
    when = show_ts(rollout.end)
    name = f"rollout {rollout.rollout_id}"
    if rollout.versions:
        name += f" ({rollout.versions})"
    if rollout.outcome == "in progress":
        return (
            f"{name} is still in progress (phase {rollout.phase or 'unknown'}){where}, "
            f"last record {when}"
        )
    return f"{name} was {rollout.outcome}{where} at {when}, after {steps} step(s)"


def _statistics(decision: Decision) -> list[str]:
    """The sequential tests behind the decision's rules (both when no rule names one)."""
    kinds = list(dict.fromkeys(RULE_TEST[r.rule] for r in decision.reasons if r.rule in RULE_TEST))
    texts = [
        text for kind in (kinds or ["errors", "latency"]) if (text := decision.test_details(kind))
    ]
    return texts or ["no sequential-test statistics were recorded with this decision"]


# --- export ---------------------------------------------------------------------------


CSV_COLUMNS = (
    "seq", "id", "ts", "kind", "rollout_id", "user", "host", "pid", "command",
    "phase_before", "phase_after", "package", "engine", "decision_id", "verdict", "action", "step",
    "weight", "rules", "canary_requests", "canary_error_rate", "canary_p99_ms",
    "stable_requests", "stable_error_rate", "stable_p99_ms", "errors_e_value",
    "latency_e_value", "summary", "prev_hash", "hash",
)  # fmt: skip


def export(records: Iterable[Record], format: str) -> str:
    """The records as `json` (an array), `csv` (one row per record) or
    `opa-decision-log` (one OPA decision-log event per decision, one JSON per line)."""
    items = list(records)
    if format == "json":
        return json.dumps(items, indent=2, ensure_ascii=False) + "\n"
    if format == "csv":
        return _csv(items)
    if format == "opa-decision-log":
        events = [_opa_event(d) for r in items if (d := decision_of(r)) is not None]
        return "".join(json.dumps(e, ensure_ascii=False, sort_keys=True) + "\n" for e in events)
    raise BadInputError(
        f"unknown export format {format!r}", hint=f"use one of {', '.join(EXPORT_FORMATS)}"
    )


def _cell(value: object) -> str:
    if value is None:
        return ""
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    # A spreadsheet runs a cell that starts with one of these as a formula.
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def _csv(records: list[Record]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for record in records:
        who = as_mapping(record.get("actor"))
        decision = decision_of(record)
        row: dict[str, object] = {
            key: record.get(key)
            for key in ("seq", "id", "ts", "kind", "rollout_id", "phase_before", "phase_after",
                        "prev_hash", "hash")
        }  # fmt: skip
        row.update(user=who.get("user"), host=who.get("host"), pid=who.get("pid"))
        command = record.get("command")
        row["command"] = " ".join(map(str, command)) if isinstance(command, list) else command
        row["summary"] = summary(record)
        if decision is not None:
            errors = decision.statistics.get("errors")
            latency = decision.statistics.get("latency")
            row.update(
                package=decision.package,
                engine=decision.engine,
                decision_id=decision.decision_id,
                verdict=decision.verdict,
                action=decision.action,
                step=None if decision.step_index is None else decision.step_index + 1,
                weight=decision.step_weight,
                rules=" ".join(r.rule for r in decision.reasons),
                canary_requests=decision.canary.requests,
                canary_error_rate=decision.canary.error_rate,
                canary_p99_ms=decision.canary.p99_ms,
                stable_requests=decision.stable.requests,
                stable_error_rate=decision.stable.error_rate,
                stable_p99_ms=decision.stable.p99_ms,
                errors_e_value=errors.get("e_value") if isinstance(errors, dict) else None,
                latency_e_value=latency.get("e_value") if isinstance(latency, dict) else None,
            )
        writer.writerow([_cell(row.get(column)) for column in CSV_COLUMNS])
    return buffer.getvalue()


def _opa_event(decision: Decision) -> dict[str, Any]:
    """OPA's decision-log event shape (decision_id, path, input, result, timestamp, labels)."""
    record = decision.record
    who = as_mapping(record.get("actor"))
    labels = {"app": "swiftdeploy", "version": __version__, "engine": decision.engine}
    if isinstance(who.get("host"), str):
        labels["id"] = who["host"]
    if decision.rollout_id:
        labels["rollout_id"] = decision.rollout_id
    event: dict[str, Any] = {
        "decision_id": decision.decision_id or record.get("id"),
        "path": "/".join([*decision.package.split("."), "decision"]),
        "input": dict(decision.input),
        "result": dict(decision.output),
        "timestamp": record.get("ts"),
        "labels": labels,
        "requested_by": f"{who.get('user', '?')}@{who.get('host', '?')}",
        "req_id": record.get("seq"),
    }
    elapsed = decision.output.get(
        "elapsed_ms", as_mapping(record.get("decision")).get("elapsed_ms")
    )
    if isinstance(elapsed, int | float) and not isinstance(elapsed, bool):
        event["metrics"] = {"timer_rego_query_eval_ns": int(elapsed * 1_000_000)}
    return event


# --- the report -----------------------------------------------------------------------


@dataclass(frozen=True)
class RolloutSection:
    rollout: Rollout
    anchor: str
    why: list[str]
    reason: str  # the decisive decision in one sentence
    charts: list[tuple[charts.Chart, str, str]]  # (chart, svg text, file name)


def _chart_set(rollout: Rollout) -> list[charts.Chart]:
    decisions = [d for d in rollout.decisions if d.canary.status is not None or d.statistics]
    boundaries = [
        charts.Boundary(rollout.offset(step.start), step.name.replace(" of traffic", ""))
        for step in rollout.steps
    ]
    boundaries += [
        charts.Boundary(
            rollout.offset(_at(record)),
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
                    decision.action,
                    f"{decision.outcome}: {decision.sentence()}",
                    final=decision is decisive and decision.action != "hold",
                )
            )
        return out

    thresholds = decisions[-1].thresholds if decisions else {}
    max_error = thresholds.get("max_error_rate")
    max_p99 = thresholds.get("max_p99_ms")
    name = slug(rollout.rollout_id)
    return [
        charts.Chart(
            chart_id=f"{name}-error-rate",
            title=f"Error rate per track, rollout {rollout.rollout_id}",
            y_label="error rate (%)",
            y_format=lambda v: f"{v:g}%",
            series=[
                charts.Series("stable", charts.STABLE_COLOR, series("stable", "error_rate", 100)),
                charts.Series("canary", charts.CANARY_COLOR, series("canary", "error_rate", 100)),
            ],
            boundaries=boundaries,
            markers=markers("error_rate", 100),
            threshold=(max_error * 100, f"max {pct(max_error)}")
            if isinstance(max_error, int | float)
            else None,
        ),
        charts.Chart(
            chart_id=f"{name}-p99",
            title=f"p99 latency per track, rollout {rollout.rollout_id}",
            y_label="p99 latency (ms)",
            y_format=lambda v: f"{v:g} ms",
            series=[
                charts.Series("stable", charts.STABLE_COLOR, series("stable", "p99_ms", 1)),
                charts.Series("canary", charts.CANARY_COLOR, series("canary", "p99_ms", 1)),
            ],
            boundaries=boundaries,
            markers=markers("p99_ms", 1),
            threshold=(float(max_p99), f"max {ms(max_p99)}")
            if isinstance(max_p99, int | float)
            else None,
        ),
    ]


def _sections(records: Sequence[Record]) -> list[RolloutSection]:
    sections = []
    for rollout in rollouts(records):
        rendered = [
            (chart, charts.render(chart), f"{chart.chart_id}.svg") for chart in _chart_set(rollout)
        ]
        lines = why(records, rollout.rollout_id)
        sections.append(
            RolloutSection(
                rollout=rollout,
                anchor=f"rollout-{slug(rollout.rollout_id)}",
                why=lines,
                reason=_one_reason(rollout, lines),
                charts=rendered,
            )
        )
    return sections


def _one_reason(rollout: Rollout, why_lines: list[str]) -> str:
    if rollout.manual_command is not None and len(why_lines) > 1:
        return why_lines[1]
    decisive = rollout.decisive
    return decisive.sentence() if decisive else why_lines[-1]


def _context(records: Sequence[Record], rollout_id: str | None) -> dict[str, Any]:
    if rollout_id is not None:
        pick_rollout(records, rollout_id)  # a clear error for an unknown id
        records = [r for r in records if r.get("rollout_id") == rollout_id]
    timeline = [
        {
            "ts": r.get("ts", ""),
            "kind": r.get("kind", ""),
            "rollout": r.get("rollout_id") or "",
            "actor": actor(r),
            "summary": summary(r),
            "seq": r.get("seq", ""),
        }
        for r in records
    ]
    found: list[tuple[Decision, Reason]] = violations(records)
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
    """Write `audit_report.md` (+ `charts/*.svg`) and a self-contained `audit_report.html`."""
    context = _context(list(records), rollout_id)
    _ensure_dir(out_dir)
    chart_dir = _ensure_dir(out_dir / CHART_DIR)
    for section in context["sections"]:
        for _, svg, name in section.charts:
            atomic_write(chart_dir / name, svg + "\n", FILE_MODE)
    md_path, html_path = out_dir / MD_NAME, out_dir / HTML_NAME
    atomic_write(md_path, _markdown(context), FILE_MODE)
    atomic_write(html_path, _html(context), FILE_MODE)
    return md_path, html_path


def _ensure_dir(path: Path) -> Path:
    """A new directory is private (0700); an existing one (`--out .`) is left as it is."""
    if not path.is_dir():
        private_dir(path)
    return path


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
        out += _md_table(
            ["step", "started", "decisions", "last verdict", "why"],
            [
                [step.name, f"+{rollout.offset(step.start):.0f} s", len(step.decisions),
                 step.last.verdict if step.last else "-",
                 step.last.sentence() if step.last else "-"]
                for step in rollout.steps
            ],
        )  # fmt: skip
        out += ["", "### Charts", ""]
        out += [f"![{chart.title}]({CHART_DIR}/{name})" for chart, _, name in section.charts]
        out += ["", "### Gate decisions", ""]
        out += _md_table(
            ["time", "step", "policy", "verdict", "reasons"],
            [
                [show_ts(d.at), d.step_name, d.package, d.verdict, d.sentence()]
                for d in rollout.decisions
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


def _html(context: dict[str, Any]) -> str:
    env = Environment(autoescape=True, trim_blocks=True, lstrip_blocks=True)
    template = env.from_string(_HTML)
    # Markup: the SVG text comes from charts.render, which escapes every string in it.
    return template.render(svg=Markup, show_ts=show_ts, **context)


_HTML = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>SwiftDeploy audit report</title>
<style>
body { font: 14px/1.45 "DejaVu Sans", "Liberation Sans", Arial, sans-serif; color: #1d1d1f;
       margin: 0 auto; max-width: 1180px; padding: 24px; background: #fafafa; }
h1 { font-size: 24px; margin: 0 0 4px; }
h2 { font-size: 19px; margin: 32px 0 8px; border-bottom: 2px solid #ddd; padding-bottom: 4px; }
h3 { font-size: 15px; margin: 18px 0 6px; }
.meta { color: #555; }
code { font-family: "DejaVu Sans Mono", monospace; font-size: 12px; word-break: break-all; }
table { border-collapse: collapse; width: 100%; background: #fff; margin: 6px 0 12px; }
th, td { border: 1px solid #ddd; padding: 4px 8px; text-align: left; vertical-align: top; }
th { background: #f0f0f2; }
td.num { text-align: right; white-space: nowrap; }
.badge { display: inline-block; padding: 1px 8px; border-radius: 10px; color: #fff;
         font-weight: bold; font-size: 12px; }
.o-promoted, .v-promote { background: #2a9d3c; }
.o-rolled-back, .o-failed, .v-rollback { background: #d62828; }
.o-in-progress, .v-hold { background: #8a8a8a; }
ul.why { background: #fff; border-left: 4px solid #6a4c93; padding: 8px 8px 8px 28px; }
.charts svg { display: block; margin: 8px 0; border: 1px solid #e0e0e0; max-width: 100%;
              height: auto; }
.nowrap { white-space: nowrap; }
</style>
</head>
<body>
<h1>SwiftDeploy audit report</h1>
<p class="meta">Generated {{ generated }} by swiftdeploy {{ version }} from {{ records }} audit
records ({{ first_ts }} to {{ last_ts }})
{%- if rollout_filter %}, rollout {{ rollout_filter }} only{% endif %}.<br>
Chain head: <code>{{ head }}</code></p>

<h2 id="rollouts">Rollouts</h2>
{% if sections %}
<table>
<tr><th>rollout</th><th>versions</th><th>started</th><th>steps</th><th>outcome</th>
<th>why</th></tr>
{% for s in sections %}
<tr><td><a href="#{{ s.anchor }}">{{ s.rollout.rollout_id }}</a></td>
<td>{{ s.rollout.versions or '-' }}</td>
<td class="nowrap">{{ show_ts(s.rollout.start) }}</td>
<td class="num">{{ s.rollout.steps|length }}</td>
<td><span class="badge o-{{ s.rollout.outcome|replace(' ', '-') }}">
{{- s.rollout.outcome }}</span></td>
<td>{{ s.reason }}</td></tr>
{% endfor %}
</table>
{% else %}
<p>No rollout was recorded.</p>
{% endif %}

{% for s in sections %}
<section class="rollout" id="{{ s.anchor }}">
<h2>Rollout {{ s.rollout.rollout_id }}:
<span class="badge o-{{ s.rollout.outcome|replace(' ', '-') }}">{{ s.rollout.outcome }}</span></h2>
<ul class="why">
{% for line in s.why %}<li>{{ line }}</li>
{% endfor %}
</ul>
<h3>Steps</h3>
<table>
<tr><th>step</th><th>started</th><th>decisions</th><th>last verdict</th><th>why</th></tr>
{% for step in s.rollout.steps %}
<tr><td class="nowrap">{{ step.name }}</td>
<td class="num">+{{ '%.0f'|format(s.rollout.offset(step.start)) }} s</td>
<td class="num">{{ step.decisions|length }}</td>
<td>{% if step.last %}<span class="badge v-{{ step.last.verdict }}">
{{- step.last.verdict }}</span>{% else %}-{% endif %}</td>
<td>{{ step.last.sentence() if step.last else '-' }}</td></tr>
{% endfor %}
</table>
<h3>Charts</h3>
<div class="charts">
{% for chart, text, name in s.charts %}{{ svg(text) }}
{% endfor %}
</div>
<h3>Gate decisions</h3>
<table>
<tr><th>time</th><th>step</th><th>policy</th><th>verdict</th><th>reasons</th></tr>
{% for d in s.rollout.decisions %}
<tr><td class="nowrap">{{ show_ts(d.at) }}</td><td class="nowrap">{{ d.step_name }}</td>
<td>{{ d.package }}</td>
<td><span class="badge v-{{ d.verdict }}">{{ d.verdict }}</span></td>
<td>{{ d.sentence() }}</td></tr>
{% endfor %}
</table>
</section>
{% endfor %}

<h2 id="violations">Policy violations</h2>
{% if violations %}
<table>
<tr><th>time</th><th>rollout</th><th>step</th><th>policy</th><th>rule</th>
<th>observed / threshold</th><th>in words</th></tr>
{% for v in violations %}
<tr><td class="nowrap">{{ v.ts }}</td><td>{{ v.rollout }}</td>
<td class="nowrap">{{ v.step }}</td><td>{{ v.package }}</td>
<td><code>{{ v.rule }}</code></td><td>{{ v.facts }}</td><td>{{ v.sentence }}</td></tr>
{% endfor %}
</table>
{% else %}
<p>None.</p>
{% endif %}

<h2 id="chaos">Chaos events</h2>
{% if chaos %}
<table>
<tr><th>time</th><th>rollout</th><th>who</th><th>what</th></tr>
{% for c in chaos %}
<tr><td class="nowrap">{{ c.ts }}</td><td>{{ c.rollout }}</td><td>{{ c.actor }}</td>
<td>{{ c.summary }}</td></tr>
{% endfor %}
</table>
{% else %}
<p>None.</p>
{% endif %}

<h2 id="timeline">Timeline</h2>
<table>
<tr><th>seq</th><th>time</th><th>kind</th><th>rollout</th><th>who</th><th>what</th></tr>
{% for t in timeline %}
<tr><td class="num">{{ t.seq }}</td><td class="nowrap">{{ t.ts }}</td><td>{{ t.kind }}</td>
<td>{{ t.rollout }}</td><td>{{ t.actor }}</td><td>{{ t.summary }}</td></tr>
{% endfor %}
</table>
</body>
</html>
"""
