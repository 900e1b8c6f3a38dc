"""Reports, `why` and exports from a synthetic trail: one rollout promoted through three
steps, one rolled back after chaos (tests/audit/conftest.py)."""

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
from swiftdeploy.audit.report import export, why, write_report
from swiftdeploy.errors import BadInputError

from .conftest import PROMOTED, ROLLED_BACK, START, Clock

Trail = tuple[Path, list[dict[str, Any]]]
ROLLBACK_SENTENCE = (
    "canary error rate 5.2% > 1.0% (stable 0.3%; 412 requests); "
    "sequential test on errors: e = 812 >= 100 (alpha = 0.01): canary errors worse than "
    "stable → rollback"
)


def test_why_names_rule_observed_threshold_and_statistic(synthetic: Trail) -> None:
    _, records = synthetic
    lines = why(records)  # the last rollout: the rolled-back one
    text = "\n".join(lines)
    assert lines[0].startswith(f"rollout {ROLLED_BACK} (canary v3, stable v2) was rolled back")
    assert "decision d-rollback-1 by the embedded engine (swiftdeploy.canary)" in text
    assert "rule max_error_rate: observed 5.2%, threshold 1.0%" in text
    assert "rule errors_harm: observed 812, threshold 100" in text
    assert (
        "statistic: sequential test on errors: e = 812 >= 100 (alpha = 0.01); verdict harm; "
        "p-value 0.00123; canary 21 errors in 412, stable 5 in 1650"
    ) in text
    assert len(lines) <= 8


def test_why_for_a_promoted_rollout(synthetic: Trail) -> None:
    _, records = synthetic
    text = "\n".join(why(records, PROMOTED))
    assert "was promoted at step 3 (100% of traffic)" in text
    assert "after 3 step(s)" in text
    assert "rule no_harm: observed 12.0 s, threshold 10.0 s" in text
    assert "statistic: sequential test on errors: e = 0.40 < 100 (alpha = 0.01)" in text
    assert "statistic: sequential test on latency: e = 0.60 < 100 (alpha = 0.01)" in text


def test_why_for_a_rollback_by_hand(trail_path: Path) -> None:
    clock = Clock(START)
    log = AuditLog(trail_path, 1_000_000, [], command=["swiftdeploy"], clock=clock)
    log.append("transition", rollout_id="r-h", phase_before="idle", phase_after="progressing",
               step={"index": 0, "weight": 20})  # fmt: skip
    clock.tick(5)
    log.append("command", rollout_id="r-h", command=["swiftdeploy", "rollback"])
    log.append("transition", rollout_id="r-h", phase_before="progressing",
               phase_after="rolled-back")  # fmt: skip
    lines = why([json.loads(x) for x in trail_path.read_text().splitlines()])
    assert "was rolled back" in lines[0]
    assert lines[1].startswith("rolled back by hand: `swiftdeploy rollback` by ")


def test_why_without_rollouts_or_with_an_unknown_id(synthetic: Trail) -> None:
    _, records = synthetic
    with pytest.raises(BadInputError, match="no rollout yet"):
        why([])
    with pytest.raises(BadInputError, match="no rollout 'r-nope'"):
        why(records, "r-nope")


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
    assert ROLLBACK_SENTENCE in md
    assert ROLLBACK_SENTENCE.replace(">", "&gt;") in html
    assert "rule max_error_rate: observed 5.2%, threshold 1.0%" in md
    # Rollouts with their steps and outcomes.
    for text in (md, html):
        assert "rolled back" in text
        assert "promoted" in text
        assert "step 3 (100% of traffic)" in text
        assert "chaos on canary, error rate 30.0%, for 60.0 s" in text
        assert "chaos recovered on canary" in text
        assert "Policy violations" in text
        assert "Timeline" in text
    # Charts: both tracks, step boundaries, decision markers, the threshold, the chaos.
    svg_part = html[html.index('data-chart="r-20250314-0930-v3-error-rate"') :]
    svg_part = svg_part[: svg_part.index("</svg>")]
    assert 'data-series="canary"' in svg_part
    assert 'data-series="stable"' in svg_part
    assert svg_part.count('class="decision-marker"') == 5
    assert svg_part.count('class="step-boundary"') == 1
    assert svg_part.count('class="chaos-boundary"') == 1
    assert 'class="threshold"' in svg_part
    promoted_part = html[html.index('data-chart="r-20250314-0900-v2-p99"') :]
    assert promoted_part[: promoted_part.index("</svg>")].count('class="step-boundary"') == 3
    # Every record is on the timeline.
    assert md.count("\n| ") - 1 >= len(records)


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


def test_export_json(synthetic: Trail) -> None:
    _, records = synthetic
    assert json.loads(export(records, "json")) == records


def test_export_csv(synthetic: Trail) -> None:
    _, records = synthetic
    rows = list(csv.DictReader(io.StringIO(export(records, "csv"))))
    assert len(rows) == len(records)
    assert [row["hash"] for row in rows] == [r["hash"] for r in records]
    rollback = next(row for row in rows if row["decision_id"] == "d-rollback-1")
    assert rollback["verdict"] == "rollback"
    assert rollback["rules"] == "errors_harm max_error_rate"
    assert float(rollback["canary_error_rate"]) == 0.052
    assert float(rollback["errors_e_value"]) == 812.0
    assert rollback["step"] == "1"
    assert rollback["summary"].endswith("→ rollback")
    transition = next(row for row in rows if row["phase_after"] == "rolled-back")
    assert transition["phase_before"] == "rolling-back"


def test_export_csv_neutralises_formulas(trail_path: Path) -> None:
    log = AuditLog(trail_path, 1_000_000, [], command=['=HYPERLINK("http://x")'])
    log.append("command")
    records = [json.loads(x) for x in trail_path.read_text().splitlines()]
    row = next(csv.DictReader(io.StringIO(export(records, "csv"))))
    assert row["command"].startswith("'=")


def test_export_opa_decision_log(synthetic: Trail) -> None:
    _, records = synthetic
    events = [json.loads(line) for line in export(records, "opa-decision-log").splitlines()]
    decisions = [r for r in records if r["kind"] == "decision"]
    assert len(events) == len(decisions)
    last = events[-1]
    assert set(last) >= {"decision_id", "path", "input", "result", "timestamp", "labels"}
    assert last["decision_id"] == "d-rollback-1"
    assert last["path"] == "swiftdeploy/canary/decision"
    assert last["result"]["verdict"] == "rollback"
    assert last["input"]["canary"]["requests"] == 412
    assert last["timestamp"] == decisions[-1]["ts"]
    assert last["labels"]["app"] == "swiftdeploy"
    assert last["labels"]["rollout_id"] == ROLLED_BACK
    assert last["metrics"]["timer_rego_query_eval_ns"] == 3_200_000


def test_export_refuses_an_unknown_format(synthetic: Trail) -> None:
    with pytest.raises(BadInputError, match="unknown export format"):
        export(synthetic[1], "xml")


def measurement(track: str, requests: int, errors: int, p99: float) -> dict[str, Any]:
    """The shape of swiftdeploy.metrics.base.Measurement.model_dump(mode="json")."""
    return {
        "track": track, "provider": "scrape", "status": "ok", "detail": "",
        "window_start": 0.0, "window_end": 10.0, "elapsed_s": 10.0,
        "requests": requests, "errors": errors, "error_rate": errors / requests,
        "quantiles": {"p50": p99 / 5, "p90": p99 / 2, "p99": p99},
        "buckets": {}, "rps": requests / 10, "evidence": [],
    }  # fmt: skip


def test_engine_shaped_records_with_a_rollback_at_the_time_limit(
    trail_path: Path, tmp_path: Path
) -> None:
    """Records as rollout/engine.py writes them: step_index and canary_weight at the top,
    Measurement dumps (p99 under `quantiles`), Decision dumps, and `action` when the
    engine applies on_timeout to a hold."""
    clock = Clock(START)
    log = AuditLog(trail_path, 1_000_000, [], command=["swiftdeploy", "canary", "v9"], clock=clock)
    rid = "ab12cd34ef56"
    log.append("transition", rollout_id=rid, phase_before="idle", phase_after="progressing",
               step_index=0, canary_weight=0, reason="rollout of v9 started")  # fmt: skip
    log.append("transition", rollout_id=rid, phase_before="progressing",
               phase_after="progressing", step_index=0, canary_weight=25,
               reason="step 1: canary weight 25%")  # fmt: skip
    for tick in range(3):
        clock.tick(20)
        canary = measurement("canary", 30 + tick, 0, 700.0 + tick)
        stable = measurement("stable", 300, 1, 90.0)
        step = {"index": 0, "weight": 25, "elapsed_s": 20.0 * (tick + 1), "min_duration_s": 10,
                "max_duration_s": 60, "on_timeout": "rollback"}  # fmt: skip
        reasons = [{"rule": "min_requests", "message": "not enough data",
                    "observed": 30 + tick, "threshold": 50}]  # fmt: skip
        log.append(
            "decision",
            rollout_id=rid,
            step_index=0,
            decision={
                "engine": "opa", "package": "swiftdeploy.canary", "decision_id": f"opa-{tick}",
                "input": {"alpha": 0.05, "step": step, "thresholds": {"max_p99_ms": 500}},
                "output": {"allow": False, "verdict": "hold", "reasons": reasons,
                           "engine": "opa", "decision_id": f"opa-{tick}", "elapsed_ms": 1.5},
                "measurements": {"canary": canary, "stable": stable},
                "statistics": {}, "thresholds": {"max_p99_ms": 500}, "step": step,
            },
            action="rollback" if tick == 2 else "hold",
        )  # fmt: skip
    log.append("transition", rollout_id=rid, phase_before="progressing",
               phase_after="rolling-back", step_index=0, canary_weight=0,
               reason="not enough data")  # fmt: skip
    log.append("transition", rollout_id=rid, phase_before="rolling-back",
               phase_after="rolled-back", step_index=0, canary_weight=0,
               reason="canary stopped")  # fmt: skip
    records = [json.loads(x) for x in trail_path.read_text().splitlines()]

    lines = why(records)
    assert lines[0].startswith(f"rollout {rid} was rolled back at step 1 (25% of traffic)")
    assert lines[1].endswith("60 s into the rollout: hold, so rollback")
    assert "rule min_requests: observed 32, threshold 50" in lines[2]

    _, html_path = write_report(records, tmp_path / "out")
    html = html_path.read_text()
    p99 = html[html.index(f'data-chart="{rid}-p99"') :]
    p99 = p99[: p99.index("</svg>")]
    assert 'data-series="canary"' in p99  # p99 read from the Measurement's quantiles
    assert "702 ms" in p99
    assert p99.count('class="step-boundary"') == 1
    assert "only 32 canary requests, 50 needed → hold, so rollback" in html
    event = json.loads(export(records, "opa-decision-log").splitlines()[-1])
    assert event["metrics"]["timer_rego_query_eval_ns"] == 1_500_000
    rows = list(csv.DictReader(io.StringIO(export(records, "csv"))))
    assert [r["action"] for r in rows if r["kind"] == "decision"] == ["hold", "hold", "rollback"]
