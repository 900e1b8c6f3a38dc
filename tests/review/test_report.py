"""Reports, `why` and exports from trails as the CLI writes them (tests/support/trails.py):
one rollout promoted through three steps, one rolled back after chaos, and the
awkward cases (a promotion by hand, rollbacks before any look or step, looks that
measured nothing)."""

from __future__ import annotations

import csv
import io
import json
import re
import stat
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

from swiftdeploy.audit.log import AuditLog
from swiftdeploy.audit.looks import expand, is_look, label
from swiftdeploy.audit.recorder import AuditRecorder
from swiftdeploy.audit.verify import verify
from swiftdeploy.errors import BadInputError
from swiftdeploy.review.explain import chaos_summary, decision_of, evalue
from swiftdeploy.review.report import export, why, write_report
from swiftdeploy.rollout.statistics import WEIGHTS
from tests.support.inputs import counts
from tests.support.trails import (
    BY_HAND,
    CANARY_SAYS,
    NO_DATA,
    NO_LOOK,
    NO_STEP,
    PROMOTED,
    ROLLBACK_CANARY,
    ROLLED_BACK,
    STABLE_SAYS,
    START,
    Cli,
    Clock,
    read,
    write_synthetic_trail,
)

Trail = tuple[Path, list[dict[str, Any]]]
# A step shown at 0% ("step 1 (0% of traffic)", a chart's "step 1 (0%)"); the
# policy's own messages write "10.0% of traffic", which this must not match.
ZERO_STEP = re.compile(r"\(0(\.0+)?%( of traffic)?\)")


def decisions(records: list[dict[str, Any]], action: str) -> list[dict[str, Any]]:
    """The decisions with this action, each look of a looks record as its own record
    (embedded decisions have no id to look up)."""
    return [r for r in expand(records) if r["kind"] == "decision" and r["action"] == action]


def the_rollback(records: list[dict[str, Any]]) -> dict[str, Any]:
    (record,) = decisions(records, "rollback")
    return record


def reasons_of(record: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {r["rule"]: r for r in record["decision"]["output"]["reasons"]}


def rollback_sentence(record: dict[str, Any]) -> str:
    """The rollback in one line: the policy's messages, harm rules in rule order."""
    reasons = reasons_of(record)
    messages = [reasons["errors_harm"]["message"], reasons["max_error_rate"]["message"]]
    return "; ".join(messages) + " → rollback"


def test_why_names_rule_observed_threshold_and_statistic(synthetic: Trail) -> None:
    _, records = synthetic
    lines = why(records)  # the last rollout: the rolled-back one
    rollback = the_rollback(records)
    reasons = reasons_of(rollback)
    statistics = rollback["decision"]["statistics"]
    errors, error_rate, harm = statistics["errors"], statistics["error_rate"], statistics["harm"]
    # Both tests carry the harm, so the policy names both, with their e-values and alpha.
    assert set(reasons) == {"errors_harm", "max_error_rate"}
    # (to the 15 digits both engines keep: policy.base.Reason)
    assert reasons["errors_harm"]["observed"] == pytest.approx(errors["e_value"], rel=1e-14)
    assert reasons["max_error_rate"]["observed"] == pytest.approx(error_rate["e_value"], rel=1e-14)
    assert harm["e_value"] >= harm["threshold"] == 100

    assert lines[0].startswith(
        f"rollout {ROLLED_BACK} (canary v3, stable v2) was rolled back at step 1 (10% of traffic)"
    )
    assert lines[1] == (
        f"decision {rollback['id']} by the embedded engine (swiftdeploy.canary) at step 1 "
        "(10% of traffic), 13 s into the rollout: rollback"
    )
    assert lines[2] == (
        f"rule errors_harm: e-value {evalue(errors['e_value'])}, alpha 0.01: "
        + reasons["errors_harm"]["message"]
    )
    assert (
        f", alpha 0.01: canary errors worse than stable: {CANARY_SAYS} canary requests, "
        f"stable {STABLE_SAYS} (e-value "
    ) in lines[2]
    assert lines[3] == (
        f"rule max_error_rate: e-value {evalue(error_rate['e_value'])}, alpha 0.01: "
        + reasons["max_error_rate"]["message"]
    )
    assert f"canary error rate above 1.0% (thresholds.max_error_rate): {CANARY_SAYS}" in lines[3]
    assert lines[4:] == [
        f"statistic: evidence of harm {evalue(harm['e_value'])} >= 100 = 1/alpha",
        f"statistic: errors against stable: e = {evalue(errors['e_value'])} "
        f"(weight {WEIGHTS['errors']:g} of alpha); canary {CANARY_SAYS}, stable {STABLE_SAYS}; "
        "carries the evidence of harm",
        "statistic: error rate against thresholds.max_error_rate: e = "
        f"{evalue(error_rate['e_value'])} (weight {WEIGHTS['error_rate']:g} of alpha); "
        f"canary {CANARY_SAYS}; carries the evidence of harm",
    ]


def test_why_for_a_promoted_rollout(synthetic: Trail) -> None:
    _, records = synthetic
    lines = why(records, PROMOTED)
    text = "\n".join(lines)
    last_pass = decisions(records, "promote")[-1]
    assert len(decisions(records, "promote")) == 3  # one pass per step
    assert "was promoted at step 3 (50% of traffic)" in lines[0]
    assert "after 3 step(s)" in lines[0]
    assert lines[1] == (
        f"decision {last_pass['id']} by the embedded engine (swiftdeploy.canary) at step 3 "
        "(50% of traffic), 1 min 39 s into the rollout: promote"
    )
    assert lines[2] == (
        "rule passed: ran 32 s, minimum 30 s: step 3 (50.0% of traffic) passed after 32s "
        "and 9600 canary requests: errors by an earlier step of this rollout; latency by an "
        "earlier step of this rollout"
    )
    assert re.search(r"statistic: evidence of harm [\d.]+ < 100 = 1/alpha", text)
    assert (
        f"(weight {WEIGHTS['errors']:g} of alpha); canary 19 errors in 9600, stable 19 in 9600; "
        "passed by earlier step"
    ) in text
    assert "statistic: latency against stable: e = " in text


def test_why_for_a_rollback_by_hand(trail_path: Path) -> None:
    clock = Clock(START)
    Cli(trail_path, clock, "canary", "v2").transition(
        "r-h", "idle", "progressing", "canary v2 started by hand", stable="v1", canary="v2",
        step_index=0, weight=0,
    )  # fmt: skip
    clock.tick(5)
    rollback = Cli(trail_path, clock, "rollback")
    rollback.command("r-h")
    rollback.transition("r-h", "progressing", "rolled-back", "rolled back", stable="v1",
                        canary=None, step_index=None, weight=0)  # fmt: skip
    lines = why(read(trail_path))
    assert lines[0] == (
        "rollout r-h (canary v2, stable v1) was rolled back at 2025-03-14 09:00:05.000Z, "
        "before its first step"
    )
    assert lines[1].startswith("rolled back by hand: `swiftdeploy rollback` by ")
    assert lines[1].endswith(" at 2025-03-14T09:00:05.000Z")
    assert len(lines) == 2  # no decision to explain


def test_why_for_a_promotion_by_hand(awkward: Trail) -> None:
    _, records = awkward
    lines = why(records, BY_HAND)
    (gate,) = decisions(records, "promote --all")
    assert gate["requested"] == "promote --all"
    assert lines[0].startswith(
        f"rollout {BY_HAND} (canary v4, stable v3) was promoted at step 3 (50% of traffic)"
    )
    assert lines[0].endswith("after 3 step(s)")
    assert lines[1].startswith("promoted by hand: `swiftdeploy promote --all` by ")
    assert lines[2] == (
        f"the canary policy's decision on it: decision {gate['id']} by the embedded engine "
        "(swiftdeploy.canary) at step 1 (10% of traffic), 20 s into the rollout: "
        "hold, so promote --all by hand"
    )
    # What the person went past: the evidence still missing, and the minimum duration.
    assert lines[3].startswith("rule needs_evidence: canary requests 400, needed for the power ")
    assert any(
        line.startswith("rule min_duration: ran 20 s, minimum 30 s: step 1 (10.0% of traffic)")
        for line in lines
    )


def test_why_before_any_look_before_any_step_and_without_data(awkward: Trail) -> None:
    _, records = awkward
    no_look = why(records, NO_LOOK)
    assert no_look[0].startswith(f"rollout {NO_LOOK} (canary v5, stable v4) was rolled back at ")
    assert no_look[0].endswith("before any look at the canary")
    assert "at step 1 (10% of traffic)" in no_look[0]
    assert no_look[1].startswith("rolled back by hand: `swiftdeploy rollback` by ")
    no_step = why(records, NO_STEP)
    assert no_step[0].endswith("before its first step")
    assert not ZERO_STEP.search("\n".join(no_step))
    no_data = why(records, NO_DATA)
    assert no_data[2].startswith("the last policy decision before that: decision ")
    assert no_data[2].endswith("30 s into the rollout: hold")
    assert (
        "rule no_data: observed no_data, threshold ok: no canary requests in this step yet"
    ) in "\n".join(no_data)


def test_why_without_rollouts_or_with_an_unknown_id(synthetic: Trail) -> None:
    _, records = synthetic
    with pytest.raises(BadInputError, match="no rollout yet"):
        why([])
    with pytest.raises(BadInputError, match="no rollout 'r-nope'"):
        why(records, "r-nope")


def chart_svg(html: str, chart_id: str) -> str:
    part = html[html.index(f'data-chart="{chart_id}"') :]
    return part[: part.index("</svg>")]


def test_markdown_and_html_reports(synthetic: Trail, tmp_path: Path) -> None:
    _, records = synthetic
    md_path, html_path = write_report(records, tmp_path / "out")
    md, html = md_path.read_text(), html_path.read_text()
    assert (md_path.name, html_path.name) == ("audit_report.md", "audit_report.html")

    for rollout in (PROMOTED, ROLLED_BACK):
        for chart in ("error-rate", "p99"):
            name = f"{rollout}-{chart}"
            assert f'data-chart="{name}"' in html
            assert f"(charts/{name}.svg)" in md
            svg = ET.parse(tmp_path / "out" / "charts" / f"{name}.svg").getroot()
            assert svg.tag == "{http://www.w3.org/2000/svg}svg"
    # The rollback in plain words, in both.
    rollback = the_rollback(records)
    sentence = rollback_sentence(rollback)
    assert not set(sentence) & set("&<\"'")  # so only ">" needs escaping below
    assert sentence in md
    assert sentence.replace(">", "&gt;") in html
    e = rollback["decision"]["statistics"]["error_rate"]["e_value"]
    assert f"rule max_error_rate: e-value {evalue(e)}, alpha 0.01" in md  # a violation
    # Rollouts with their steps and outcomes.
    for text in (md, html):
        assert "rolled back" in text
        assert "promoted" in text
        assert "step 3 (50% of traffic)" in text
        assert not ZERO_STEP.search(text)
        assert "chaos on canary, error rate 30.0%, for 1 min" in text
        assert "+0.0 ms" not in text  # chaos records 0 for the effect it was not given
        assert "Policy violations" in text
        assert "Timeline" in text
    # Charts: both tracks, step boundaries, decision markers, the threshold, the chaos.
    svg_part = chart_svg(html, f"{ROLLED_BACK}-error-rate")
    assert 'data-series="canary"' in svg_part
    assert 'data-series="stable"' in svg_part
    assert svg_part.count('class="decision-marker"') == 5
    assert svg_part.count('class="step-boundary"') == 1
    assert svg_part.count('class="chaos-boundary"') == 1
    assert 'class="threshold"' in svg_part
    promoted = chart_svg(html, f"{PROMOTED}-p99")
    assert promoted.count('class="step-boundary"') == 3
    assert promoted.count('class="decision-marker"') == 12
    assert ">step 2 (25%)</text>" in promoted
    # Every record is on the timeline, on its own or in a run of the same hold.
    assert_timeline_covers(md, records)


def assert_timeline_covers(md: str, records: list[dict[str, Any]]) -> None:
    """The Markdown timeline's rows cover every record (each look of a looks record,
    `12.3`), in order, each once (a run's row: `12-15.4`)."""
    labels = [str(label(r)) for r in expand(records)]
    at = 0
    for row in md[md.index("## Timeline") :].splitlines()[4:]:
        first, _, last = row.split(" | ")[0].removeprefix("| ").partition("-")
        assert labels[at] == first
        at = labels.index(last or first, at) + 1
    assert at == len(labels)


def test_the_html_is_self_contained(synthetic: Trail, tmp_path: Path) -> None:
    _, records = synthetic
    _, html_path = write_report(records, tmp_path)
    html = html_path.read_text()
    assert "<style>" in html
    for needle in ("<script", "<link", "@import", "url(", '<img src="http', "<iframe"):
        assert needle not in html
    # The only absolute URL is the SVG namespace, which is never fetched.
    urls = set(re.findall(r"https?://[^\s\"'<>)]+", html))
    assert urls == {"http://www.w3.org/2000/svg"}
    assert not re.search(r"(src|href)=\"(?!#)", html)


def test_report_for_one_rollout(synthetic: Trail, tmp_path: Path) -> None:
    _, records = synthetic
    _, html_path = write_report(records, tmp_path, ROLLED_BACK)
    html = html_path.read_text()
    assert ROLLED_BACK in html
    assert PROMOTED not in html
    with pytest.raises(BadInputError, match="no rollout"):
        write_report(records, tmp_path, "r-nope")


def test_report_of_the_awkward_rollouts(awkward: Trail, tmp_path: Path) -> None:
    """No 0% step that never happened, no empty chart, a line where a chart is missing."""
    _, records = awkward
    md_path, html_path = write_report(records, tmp_path / "out")
    md, html = md_path.read_text(), html_path.read_text()
    for text in (md, html):
        assert not ZERO_STEP.search(text)
        assert "no measurements recorded" not in text
        assert text.count("No charts: the policy never looked at this canary") == 2
        assert text.count("No charts: no look at this canary had a usable measurement") == 1
        assert "No step took traffic" in text  # NO_STEP
    # Only the rollout promoted by hand has something to plot: its gate's look.
    written = sorted(p.name for p in (tmp_path / "out" / "charts").iterdir())
    assert written == [f"{BY_HAND}-error-rate.svg", f"{BY_HAND}-p99.svg"]
    assert html.count('<svg xmlns="http://www.w3.org/2000/svg" class="chart"') == 2
    by_hand = md[md.index(f"## Rollout {BY_HAND}") : md.index(f"## Rollout {NO_LOOK}")]
    steps = [line.split(" | ")[0] for line in by_hand.splitlines() if re.match(r"\| step \d", line)]
    assert steps == ["| step 1 (10% of traffic)", "| step 2 (25% of traffic)",
                     "| step 3 (50% of traffic)"]  # fmt: skip
    # Steps 2 and 3 began 50 ms apart: their labels are stacked, not drawn over each other.
    svg = chart_svg(html, f"{BY_HAND}-error-rate")
    found = re.finditer(
        r'data-label="step" x="(?P<x>[\d.]+)" y="(?P<y>[\d.]+)"[^>]*>(?P<label>[^<]+)<', svg
    )
    labels = {m["label"]: (float(m["x"]), float(m["y"])) for m in found}
    assert set(labels) == {"step 1 (10%)", "step 2 (25%)", "step 3 (50%)"}
    assert abs(labels["step 2 (25%)"][0] - labels["step 3 (50%)"][0]) < 2
    assert abs(labels["step 2 (25%)"][1] - labels["step 3 (50%)"][1]) >= 12
    no_look = md[md.index(f"## Rollout {NO_LOOK}") : md.index(f"## Rollout {NO_STEP}")]
    assert "| step 1 (10% of traffic) | +2 s | 0 | - | - |" in no_look


def test_report_escapes_what_it_shows(trail_path: Path, tmp_path: Path) -> None:
    log = AuditLog(trail_path, 1_000_000, [], command=["swiftdeploy", "<b>x</b>"])
    log.append("transition", rollout_id="r-<script>alert(1)</script>", phase_before="idle",
               phase_after="progressing", reason="<img src=x onerror=alert(1)>")  # fmt: skip
    log.append("chaos", rollout_id="r-<script>alert(1)</script>", track="<svg onload=x>")
    records = [json.loads(x) for x in trail_path.read_text().splitlines()]
    _, html_path = write_report(records, tmp_path / "out")
    html = html_path.read_text()
    assert "<script>alert" not in html
    assert "<img src=x" not in html
    assert "<svg onload" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    for svg in (tmp_path / "out" / "charts").iterdir():
        ET.parse(svg)  # well-formed XML whatever the ids were


def test_an_existing_output_directory_keeps_its_mode(synthetic: Trail, tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o755)
    write_report(synthetic[1], shared)
    assert stat.S_IMODE(shared.stat().st_mode) == 0o755
    write_report(synthetic[1], tmp_path / "new")
    assert stat.S_IMODE((tmp_path / "new").stat().st_mode) == 0o700


def test_an_empty_report(tmp_path: Path) -> None:
    md_path, html_path = write_report([], tmp_path)
    assert "No rollout was recorded." in md_path.read_text()
    assert "No rollout was recorded." in html_path.read_text()


def test_chaos_summaries() -> None:
    assert chaos_summary({"track": "canary", "recover": True}) == "chaos recovered on canary"
    assert (
        chaos_summary({"track": "stable", "error_rate": 0.0, "latency_ms": 250.0,
                       "duration_s": None, "recover": False})
        == "chaos on stable, +250 ms latency"
    )  # fmt: skip


def test_export_json(synthetic: Trail) -> None:
    _, records = synthetic
    assert json.loads(export(records, "json")) == records


def test_export_csv(synthetic: Trail) -> None:
    _, records = synthetic
    rows = list(csv.DictReader(io.StringIO(export(records, "csv"))))
    looks = expand(records)  # a row for each look
    assert len(rows) == len(looks) > len(records)
    assert [row["hash"] for row in rows] == [r["hash"] for r in looks]
    assert [row["seq"] for row in rows] == [str(label(r)) for r in looks]
    assert any("." in row["seq"] for row in rows)
    rollback = the_rollback(records)
    (row,) = [row for row in rows if row["id"] == rollback["id"]]
    assert row["verdict"] == row["action"] == "rollback"
    assert row["decision_id"] == ""  # the embedded engine gives none
    assert row["rules"] == "errors_harm max_error_rate"
    requests, errors = ROLLBACK_CANARY
    assert float(row["canary_error_rate"]) == errors / requests
    assert float(row["canary_requests"]) == requests
    assert float(row["errors_e_value"]) == rollback["decision"]["statistics"]["errors"]["e_value"]
    assert row["step"] == "1"
    assert float(row["weight"]) == 10
    summary = "swiftdeploy.canary step 1 (10% of traffic): " + rollback_sentence(rollback)
    assert row["summary"] == summary
    transition = next(row for row in rows if row["phase_after"] == "rolled-back")
    assert transition["phase_before"] == "rolling-back"
    assert transition["command"] == "swiftdeploy rollout v3"


def test_export_csv_neutralises_formulas(trail_path: Path) -> None:
    log = AuditLog(trail_path, 1_000_000, [], command=['=HYPERLINK("http://x")'])
    log.append("command")
    records = [json.loads(x) for x in trail_path.read_text().splitlines()]
    row = next(csv.DictReader(io.StringIO(export(records, "csv"))))
    assert row["command"].startswith("'=")


def test_export_opa_decision_log(synthetic: Trail) -> None:
    _, records = synthetic
    events = [json.loads(line) for line in export(records, "opa-decision-log").splitlines()]
    recorded = [r for r in expand(records) if r["kind"] == "decision"]
    assert len(events) == len(recorded)
    assert len({event["decision_id"] for event in events}) == len(events)
    last, rollback = events[-1], the_rollback(records)
    assert set(last) >= {"decision_id", "path", "input", "result", "timestamp", "labels"}
    assert last["decision_id"] == rollback["id"]  # the record's id stands in for OPA's
    assert last["path"] == "swiftdeploy/canary/decision"
    assert last["result"]["verdict"] == "rollback"
    assert last["input"]["canary"]["requests"] == 200
    assert last["timestamp"] == rollback["ts"]
    assert last["labels"]["app"] == "swiftdeploy"
    assert last["labels"]["engine"] == "embedded"
    assert last["labels"]["rollout_id"] == ROLLED_BACK
    elapsed_ms = rollback["decision"]["output"]["elapsed_ms"]
    assert elapsed_ms > 0
    assert last["metrics"]["timer_rego_query_eval_ns"] == int(elapsed_ms * 1_000_000)


def test_export_refuses_an_unknown_format(synthetic: Trail) -> None:
    with pytest.raises(BadInputError, match="unknown export format"):
        export(synthetic[1], "xml")


def test_engine_shaped_records_with_a_hold_at_the_time_limit(
    trail_path: Path, tmp_path: Path
) -> None:
    """Records as rollout/engine.py writes them: step_index and canary_weight at the top
    of transitions and decisions, Measurement dumps (p99 under `quantiles`), Decision
    dumps, and the action `held` when a step is still undecided at max_duration (600 s
    by default); a person then rolls it back."""
    clock = Clock(START)
    rid, versions = "ab12cd34ef56", {"stable": "v8", "canary": "v9"}
    cli = Cli(trail_path, clock, "rollout", "v9")
    cli.transition(rid, "promoted", "progressing", "rollout of v9 started", **versions,
                   step_index=0, weight=0)  # fmt: skip
    cli.transition(rid, "progressing", "progressing", "step 1: canary weight 25%", **versions,
                   step_index=0, weight=25)  # fmt: skip
    for n in (1, 2, 3):
        clock.tick(200)
        elapsed = 200.0 * n
        # Too few canary requests to decide; one of them slow, so its p99 is 401 ms.
        look = cli.look(rid, counts(30 + n, 0, 1), counts(300 * n, 1), elapsed_s=elapsed,
                        weight=25, action="held" if elapsed >= 600 else None)  # fmt: skip
        assert look.decision.verdict == "hold"
    cli.transition(rid, "progressing", "paused", "held: not enough evidence", **versions,
                   step_index=0, weight=25)  # fmt: skip
    clock.tick(30)
    rollback = Cli(trail_path, clock, "rollback")
    rollback.command(rid)
    rollback.transition(rid, "paused", "rolling-back", "rollback: rolled back by hand",
                        **versions, step_index=0, weight=0)  # fmt: skip
    rollback.transition(rid, "rolling-back", "rolled-back", "rolled back", stable="v8",
                        canary=None, step_index=None, weight=0)  # fmt: skip
    records = read(trail_path)
    held = records[-5]
    assert (held["kind"], held["action"], held["step_index"]) == ("decision", "held", 0)
    canary = held["decision"]["measurements"]["canary"]
    assert "p99_ms" not in canary  # a Measurement dump: quantiles, not the input's p99_ms
    p99 = canary["quantiles"]["p99"]
    assert round(p99) == 401

    lines = why(records)
    assert lines[0].startswith(
        f"rollout {rid} (canary v9, stable v8) was rolled back at step 1 (25% of traffic)"
    )
    assert lines[1].startswith("rolled back by hand: `swiftdeploy rollback` by ")
    assert lines[2] == (
        f"the last policy decision before that: decision {held['id']} by the embedded engine "
        "(swiftdeploy.canary) at step 1 (25% of traffic), 10 min into the rollout: "
        "hold at max_duration, so held for a person"
    )
    needs = [r for r in held["decision"]["output"]["reasons"] if r["rule"] == "needs_evidence"]
    assert [r["message"].split(":")[0] for r in needs] == ["errors", "latency"]
    assert lines[3:5] == [
        f"rule needs_evidence: canary requests 33, needed for the power {r['threshold']}: "
        + r["message"]
        for r in needs
    ]

    _, html_path = write_report(records, tmp_path / "out")
    html = html_path.read_text()
    chart = chart_svg(html, f"{rid}-p99")
    assert 'data-series="canary"' in chart  # p99 read from the Measurement's quantiles
    assert f"canary: {p99:g} ms at 10 min" in chart
    assert chart.count('class="step-boundary"') == 1
    assert "→ hold at max_duration, so held for a person" in html
    events = [json.loads(x) for x in export(records, "opa-decision-log").splitlines()]
    assert events[-1]["metrics"]["timer_rego_query_eval_ns"] == int(
        held["decision"]["output"]["elapsed_ms"] * 1_000_000
    )
    rows = list(csv.DictReader(io.StringIO(export(records, "csv"))))
    assert [r["action"] for r in rows if r["kind"] == "decision"] == ["hold", "hold", "held"]
    # The p99 comes from the Measurement's quantiles even where the input has none.
    assert held["decision"]["input"]["canary"]["p99_ms"] == p99
    stripped = json.loads(json.dumps(held))
    del stripped["decision"]["input"]["canary"]["p99_ms"]
    decision = decision_of(stripped)
    assert decision is not None
    assert decision.canary.p99_ms == p99


# --- runs of the same hold, and trails with and without look records ------------------


def test_a_run_of_the_same_hold_is_one_row(synthetic: Trail, tmp_path: Path) -> None:
    # Given the promoted rollout's second step: three looks holding for the same reasons
    # (a full record and a looks record of two), and the look that passes
    _, records = synthetic
    holds = [r for r in decisions(records, "hold") if r["rollout_id"] == PROMOTED]
    holds = [r for r in holds if r["step_index"] == 1]
    assert len(holds) == 3
    assert [is_look(r) for r in records if r["seq"] in (holds[0]["seq"], holds[1]["seq"])] == [
        False, True]  # fmt: skip
    # When the report is written
    md_path, html_path = write_report(records, tmp_path / "out")
    md, html = md_path.read_text(), html_path.read_text()
    # Then the three holds are one row with their count and span, in both tables
    first, last = holds[0], holds[-1]
    run = f"hold x 3, {first['ts'][11:19]}-{last['ts'][11:19]}: "
    section = md[md.index(f"## Rollout {PROMOTED}") : md.index(f"## Rollout {ROLLED_BACK}")]
    (row,) = [line for line in section.splitlines() if run in line]
    assert row.endswith("→ hold |")
    assert run in html
    (timeline_row,) = [line for line in md.splitlines() if line.startswith(f"| {label(first)}-")]
    assert timeline_row.startswith(f"| {label(first)}-{label(last)} | {first['ts']} | decision")
    assert run in timeline_row
    # And the look that passed keeps its own row
    assert "→ promote |" in section


def test_a_record_written_while_looks_are_held_comes_before_them(
    synthetic: Trail, tmp_path: Path
) -> None:
    # Given the rolled-back rollout: four looks holding (the last three held back by the
    # rollout's process), chaos recorded by another process, the look that rolls back
    _, records = synthetic
    holds = [r for r in decisions(records, "hold") if r["rollout_id"] == ROLLED_BACK]
    (chaos,) = [r for r in records if r["kind"] == "chaos"]
    assert len(holds) == 4
    # Then the trail has chaos before the three looks taken before it, each at its time
    assert [r["seq"] for r in holds] == [chaos["seq"] - 1, *[chaos["seq"] + 1] * 3]
    assert all(r["ts"] < chaos["ts"] for r in holds)
    # And the report shows them in the trail's order, each row with its time
    md = write_report(records, tmp_path / "out")[0].read_text()
    timeline = md[md.index("## Timeline") :].splitlines()
    (at,) = [n for n, line in enumerate(timeline) if line.startswith(f"| {chaos['seq']} |")]
    run = f"hold x 3, {holds[1]['ts'][11:19]}-{holds[3]['ts'][11:19]}: "
    assert timeline[at + 1].startswith(f"| {label(holds[1])}-{label(holds[3])} | {holds[1]['ts']}")
    assert run in timeline[at + 1]


def _same_report(md: str, records: list[dict[str, Any]]) -> str:
    """A report with each record's id, hash and seq (a look's `12.3`) named by its
    position among the looks, without the time it was generated: what two trails of the
    same looks must have in common, whether several looks share a record or not."""
    looks = list(enumerate(expand(records)))
    for n, record in sorted(looks, key=lambda item: -len(item[1]["id"])):  # `x.10` before `x.1`
        md = md.replace(record["id"], f"<id {n}>")
    for n, record in looks:  # a looks record's hash is named by its first look
        md = md.replace(record["hash"], f"<hash {n}>")
    position = {str(label(record)): n for n, record in looks}
    md = re.sub(
        r"^\| ([0-9.]+)(?:-([0-9.]+))? \|",
        lambda m: "| " + "-".join(f"<seq {position[x]}>" for x in m.groups() if x) + " |",
        md,
        flags=re.MULTILINE,
    )
    return "\n".join(line for line in md.splitlines() if not line.startswith("Generated "))


def _without_timing(event: dict[str, Any], ignored: tuple[str, ...]) -> dict[str, Any]:
    """An OPA event without its ids and how long the policy took (each run's own)."""
    kept = {k: v for k, v in event.items() if k not in (*ignored, "metrics")}
    kept["result"] = {k: v for k, v in kept["result"].items() if k != "elapsed_ms"}
    return kept


def test_a_trail_with_looks_reads_as_the_same_trail_in_full(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given the same rollouts written as today (with looks records) and as before (every
    # look in full: a trail written before looks records, which must still read)
    new = write_synthetic_trail(tmp_path / "new" / "history.jsonl")
    monkeypatch.setattr(AuditRecorder, "_hold_back", lambda self, fields: False)
    old = write_synthetic_trail(tmp_path / "old" / "history.jsonl")
    assert any(is_look(r) for r in new)
    assert not any(is_look(r) for r in old)
    # Then both verify
    assert verify(tmp_path / "new" / "history.jsonl").ok
    assert verify(tmp_path / "old" / "history.jsonl").ok
    # And the reports, `why` and the exports of decisions say the same of both
    # (the promoted rollout's: in the other one, chaos, recorded by another process
    # while looks were held back, comes before them in the new trail)
    reports = [
        _same_report(write_report(records, tmp_path / name, PROMOTED)[0].read_text(), records)
        for name, records in (("new-report", new), ("old-report", old))
    ]
    assert reports[0] == reports[1]
    for rollout_id in (PROMOTED, ROLLED_BACK):
        told = [_same_report("\n".join(why(r, rollout_id)), r) for r in (new, old)]
        assert told[0] == told[1]
    ignored = ("id", "hash", "prev_hash", "decision_id", "seq", "req_id")  # where, not what
    rows = [
        sorted(csv.DictReader(io.StringIO(export(r, "csv"))), key=lambda row: row["ts"])
        for r in (new, old)
    ]
    assert [{k: v for k, v in row.items() if k not in ignored} for row in rows[0]] == [
        {k: v for k, v in row.items() if k not in ignored} for row in rows[1]
    ]
    events = [
        [_without_timing(json.loads(line), ignored) for line in lines]
        for lines in (export(r, "opa-decision-log").splitlines() for r in (new, old))
    ]
    assert events[0] == events[1]
    assert len(events[0]) == len(decisions(old, "hold")) + 4  # every look, 3 passes, a rollback
