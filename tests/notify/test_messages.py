"""Messages (pure): an event and its context to each sink kind's body; what the text
says (what happened, why, what next, the report); and `validate` refusing an events
pattern that names no event."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

from bench.support.project import SWIFTDEPLOY
from bench.support.sim import init_manifest

from swiftdeploy.notify.messages import Context, body, message, report_link

WHY = [
    "rollout r7 (canary v3, stable v2) was rolled back at step 2 at 09:14, after 2 step(s)",
    "errors: canary 4.1% > stable 0.2% + 1%: the canary fails more",
]


def event(name: str, **data: Any) -> dict[str, Any]:
    base = {"rollout_id": "r7", "phase": "rolled-back", "stable_version": "v2",
            "canary_version": "v3", "weight": 0, "step": 2, "steps": 3,
            "reason": "errors <worse> & more", "by": "alice"}  # fmt: skip
    return {"specversion": "1.0", "id": "ab" * 32, "source": "swiftdeploy://shop",
            "type": f"dev.swiftdeploy.{name}.v1", "subject": "r7",
            "time": "2025-03-14T09:14:00.000Z", "seq": 42, "data": base | data}  # fmt: skip


def test_a_rollback_says_what_why_what_next_and_links_the_report() -> None:
    report = report_link("https://ci.example/reports/{service}/{rollout_id}", "shop", "r7")
    assert report == "https://ci.example/reports/shop/r7"
    said = message(event("rollout.rolled-back"), Context("shop", report, WHY))
    assert said.headline == "shop v3: rolled back — errors <worse> & more"
    assert ("Step", "2 of 3") in said.facts
    assert ("Weight", "0%") in said.facts
    assert ("Outcome", "rolled-back") in said.facts
    assert said.why == WHY
    assert said.next_steps[0] == "read why: `swiftdeploy audit why r7`"
    assert "roll out again" in said.next_steps[1]
    assert said.tone == "bad"


def test_without_why_lines_the_events_reason_is_said_and_a_held_step_names_the_commands() -> None:
    said = message(event("rollout.held", phase="paused"), Context("shop", "cmd"))
    assert said.why == ["errors <worse> & more"]
    assert [s.split(":")[0] for s in said.next_steps[:3]] == [
        "go on anyway (gated by the policy)", "end it", "look again once there is more traffic"
    ]  # fmt: skip
    assert report_link(None, "shop", "r7") == "swiftdeploy audit report --rollout r7"


def test_slack_gets_a_fallback_text_and_blocks_with_markup_escaped() -> None:
    sent = json.loads(body("slack", event("rollout.rolled-back"), Context("shop", "x", [])))
    assert sent["text"].startswith("shop v3: rolled back — errors <worse> & more\n")
    assert [b["type"] for b in sent["blocks"]] == ["header", "section", "section", "section",
                                                   "context"]  # fmt: skip
    assert "errors &lt;worse&gt; &amp; more" in sent["blocks"][2]["text"]["text"]
    linked = json.loads(body("slack", event("rollout.promoted"), Context("shop", "https://r/1")))
    assert linked["blocks"][-1]["elements"][0]["text"] == "Report: <https://r/1|the report>"


def test_teams_gets_a_message_with_an_adaptive_card_and_the_webhook_the_event() -> None:
    sent = json.loads(body("teams", event("rollout.promoted"), Context("shop", "https://r/1")))
    attachment = sent["attachments"][0]
    assert (sent["type"], attachment["contentType"]) == (
        "message", "application/vnd.microsoft.card.adaptive"
    )  # fmt: skip
    card = attachment["content"]
    assert (card["type"], card["version"]) == ("AdaptiveCard", "1.4")
    assert card["body"][0]["text"] == "shop v3: promoted: it is the stable version now"
    assert card["actions"] == [{"type": "Action.OpenUrl", "title": "Report", "url": "https://r/1"}]
    plain = event("rollout.step")
    assert json.loads(body("webhook", plain, Context("shop", "x"))) == plain


def hook_event(kind: str, **data: Any) -> dict[str, Any]:
    """A hook event as events.py writes it (data of docs/events.md, `hook`)."""
    base = {
        "rollout_id": "r7",
        "hook": "approve",
        "result": "refused",
        "status": 403,
        "attempts": 1,
        "error": None,
        "step": 2,
        "steps": 2,
        "canary_version": "v4",
        "summary": 'answered HTTP 403: {"approved": false}',
        "asks": 1,
        "waited_s": 0.1,
    }
    return {**event(f"hook.{kind}"), "data": base | data}  # fmt: skip


def test_a_rollback_before_any_traffic_names_the_version_and_the_hook() -> None:
    # Given the rolled-back event of v4, stopped by its pre-rollout hook
    cause = "pre-rollout hook smoke answered HTTP 500: smoke failed: 3 of 10 checks"
    done = event("rollout.rolled-back", canary_version="v4", stable_version="v3",
                 step=None, reason=cause)  # fmt: skip
    # Then the headline names v4 (not the stable v3) and the cause's first clause
    said = message(done, Context("demo", "x"))
    assert said.headline == "demo v4: rolled back — pre-rollout hook smoke answered HTTP 500"
    assert ("Version", "v4") in said.facts
    assert said.why == [cause]


def test_hook_answers_read_in_plain_words_with_the_version() -> None:
    waiting = message(hook_event("confirm-promotion"), Context("demo", "x"))
    assert waiting.headline == (
        "demo v4: waiting for approval — hook approve (confirm-promotion) answered HTTP 403;"
        " the step holds until it answers 2xx"
    )
    assert {("Version", "v4"), ("Step", "2 of 2"), ("Outcome", "waiting for approval")} <= set(
        waiting.facts
    )
    assert waiting.why == [
        'hook approve (confirm-promotion) answered HTTP 403: {"approved": false}'
    ]
    assert "until hook approve answers 2xx" in waiting.next_steps[0]
    assert waiting.tone == "info"
    approved = message(
        hook_event("confirm-promotion", result="ok", status=200, waited_s=580.0, asks=117),
        Context("demo", "x"),
    )
    assert approved.headline == (
        "demo v4: approved — hook approve (confirm-promotion) answered HTTP 200 after 9 min 40 s"
    )
    assert (approved.tone, ("Outcome", "approved") in approved.facts) == ("good", True)
    smoke = hook_event("pre-rollout", hook="smoke", status=500, step=0,
                       summary="answered HTTP 500: smoke failed")  # fmt: skip
    stopped = message(smoke, Context("demo", "x"))
    assert stopped.headline == (
        "demo v4: stopped before any traffic — pre-rollout hook smoke answered HTTP 500: "
        "smoke failed"
    )
    assert ("Step", "before step 1 of 2") in stopped.facts
    assert stopped.tone == "bad"


def test_dead_letters_read_in_words() -> None:
    letter = event("notification.dead-letter", sink="oncall", event_type="t", error="HTTP 503")
    said = message(letter, Context("shop", "x"))
    assert ("Sink", "oncall") in said.facts
    assert "`swiftdeploy status` lists dead letters" in said.next_steps[0]


def test_validate_refuses_a_pattern_that_names_no_event(tmp_path: Path) -> None:
    sinks = [{"name": "log", "kind": "webhook", "url": "http://127.0.0.1:9/x",
              "events": ["rollout.*", "rollout.rolledback"]}]  # fmt: skip
    loaded = init_manifest(tmp_path, notifications={"signing_key": {"env": "K"}, "sinks": sinks})
    done = subprocess.run([SWIFTDEPLOY, "validate", "-f", str(loaded.path)],
                          capture_output=True, text=True, check=False)  # fmt: skip
    assert done.returncode == 2, done.stderr
    first = done.stderr.strip().splitlines()[0]
    assert "notifications.sinks[0].events[1]: no event 'rollout.rolledback'" in first
    assert "Traceback" not in done.stderr
