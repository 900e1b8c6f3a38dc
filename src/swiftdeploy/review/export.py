"""`swiftdeploy audit export`: the records as JSON, CSV or OPA decision-log events.

JSON is the records as written (each still checks against its hash), looks records
relative to their full record (swiftdeploy.audit.looks); CSV and the OPA decision log
have every look's full decision, look i of the record with seq s as `s.i`."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable
from typing import Any

from swiftdeploy import __version__
from swiftdeploy.audit.log import Record
from swiftdeploy.audit.looks import expand, label
from swiftdeploy.errors import BadInputError
from swiftdeploy.review.explain import DecisionView, as_mapping, decision_of, summary

EXPORT_FORMATS = ("json", "csv", "opa-decision-log")
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
        return _csv(expand(items))
    if format == "opa-decision-log":
        events = [_opa_event(d) for r in expand(items) if (d := decision_of(r)) is not None]
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
        row.update(
            seq=label(record), user=who.get("user"), host=who.get("host"), pid=who.get("pid")
        )
        command = record.get("command")
        row["command"] = " ".join(map(str, command)) if isinstance(command, list) else command
        row["summary"] = summary(record)
        if decision is not None:
            errors = as_mapping(decision.statistics.get("errors"))
            latency = as_mapping(decision.statistics.get("latency"))
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
                errors_e_value=errors.get("e_value"),
                latency_e_value=latency.get("e_value"),
            )
        writer.writerow([_cell(row.get(column)) for column in CSV_COLUMNS])
    return buffer.getvalue()


def _opa_event(decision: DecisionView) -> dict[str, Any]:
    """OPA's decision-log event shape (decision_id, path, input, result, timestamp, labels).
    The embedded engine has no decision ids; its events carry the record's id instead."""
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
