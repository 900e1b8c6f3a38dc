"""What a sink receives for one event (pure: an event and its context in, a body out).

A `webhook` sink gets the event itself (CloudEvents JSON, docs/events.md). `slack` and
`teams` sinks get a message people read: what happened in plain words (service,
version, step, weight, outcome), why (the `audit why` lines of the rollout, or the
event's own reason), what to do next (the commands), and a link to the report
(`notifications.report_url`, else the `swiftdeploy audit report` command)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from swiftdeploy.durations import format_duration
from swiftdeploy.review.events import TYPE_PREFIX, Event

# Slack: a header's text is at most 150 characters, a section's 3000 (Block Kit).
SLACK_HEADER_MAX = 150
SLACK_TEXT_MAX = 3000
WHY_LINES_MAX = 12
# How each event reads, after "<service> <version>: " (the rest says the numbers).
_SAID = {
    "rollout.started": "rollout started",
    "rollout.step": "moved to the next step",
    "rollout.held": "held: the evidence does not decide the step yet",
    "rollout.passed": "the step passed and waits",
    "rollout.paused": "paused by a person",
    "rollout.resumed": "resumed",
    "rollout.promoting": "promoting: all traffic goes to the canary",
    "rollout.promoted": "promoted: it is the stable version now",
    "rollout.rolling-back": "rolling back: the canary is at 0%",
    "rollout.rolled-back": "rolled back",
    "rollout.aborted": "aborted by a person: rolling back",
    "rollout.weight": "canary weight set by a person",
    "rollout.canary": "canary started by hand",
    "gate.refused": "the canary policy refused a person's move",
    "gate.forced": "a person went on against the canary policy",
    "driver.started": "its driver started",
    "driver.restarted": "its driver was restarted and carries on",
    "driver.exited": "its driver exited",
    "notification.dead-letter": "a notification could not be delivered",
}
# Events whose message is a warning (red in Slack's and Teams' colours).
_BAD = ("rollout.rolling-back", "rollout.rolled-back", "rollout.aborted", "rollout.held",
        "gate.refused", "notification.dead-letter")  # fmt: skip
_GOOD = ("rollout.promoted", "rollout.passed")


@dataclass(frozen=True)
class Context:
    """What the message says beyond the event: the `audit why` lines (may be empty),
    and where the report is (`report_link`)."""

    service: str
    report: str
    why: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Message:
    """One event in words, before it is shaped for a kind of sink."""

    headline: str
    facts: list[tuple[str, str]]
    why: list[str]
    next_steps: list[str]
    report: str
    tone: str  # "bad", "good" or "info"

    def text(self) -> str:
        """The whole message as plain text (Slack's fallback, logs, tests)."""
        lines = [self.headline, ", ".join(f"{k}: {v}" for k, v in self.facts)]
        if self.why:
            lines += ["Why:", *(f"  {line}" for line in self.why)]
        if self.next_steps:
            lines += ["Next:", *(f"  {step}" for step in self.next_steps)]
        lines.append(f"Report: {self.report}")
        return "\n".join(lines)


def name_of(event: Event) -> str:
    """`rollout.held` for dev.swiftdeploy.rollout.held.v1."""
    return str(event["type"]).removeprefix(TYPE_PREFIX).rsplit(".", 1)[0]


def report_link(report_url: str | None, service: str, rollout_id: str | None) -> str:
    """The manifest's report_url with {service} and {rollout_id} filled in; without
    one, the command that writes the report."""
    if report_url is not None and rollout_id:
        return report_url.replace("{service}", quote(service, safe="")).replace(
            "{rollout_id}", quote(rollout_id, safe="")
        )
    if rollout_id:
        return f"swiftdeploy audit report --rollout {rollout_id}"
    return "swiftdeploy audit report"


def message(event: Event, context: Context) -> Message:
    data: dict[str, Any] = event.get("data") or {}
    name = name_of(event)
    said = _said(name, data)
    version = data.get("canary_version") or data.get("stable_version")
    who = f"{context.service} {version}" if version else context.service
    headline = f"{who}: {said}"
    why = list(context.why[:WHY_LINES_MAX])
    reason = data.get("reason") or data.get("why") or data.get("error") or data.get("outcome")
    if name.startswith("hook.") and data.get("summary"):
        reason = f"hook {data.get('hook')} ({name.partition('.')[2]}) {data['summary']}"
    if not why and isinstance(reason, str) and reason:
        why = [reason]
    return Message(headline, _facts(name, data, context.service), why,
                   next_steps(name, data), context.report, _tone(name, data))  # fmt: skip


def _tone(name: str, data: dict[str, Any]) -> str:
    if name in _GOOD or (name.startswith("hook.confirm-") and data.get("result") == "ok"):
        return "good"
    if name.startswith("hook.confirm-"):
        return "info"  # waiting for an approval is no failure
    return "bad" if name in _BAD or data.get("result") in ("refused", "failed") else "info"


# A rollback's headline: what happened and the first clause of its cause.
_ENDING = {"rollout.rolling-back": "rolling back", "rollout.aborted": "rolling back",
           "rollout.rolled-back": "rolled back"}  # fmt: skip
CAUSE_MAX = 100


def _said(name: str, data: dict[str, Any]) -> str:
    area, _, verb = name.partition(".")
    if area == "request":
        result = data.get("result")
        return f"{data.get('by') or 'a person'} asked to {verb}" + (f": {result}" if result else "")
    if area == "hook":
        return _hook_said(verb, data)
    reason = data.get("reason")
    if name in _ENDING and isinstance(reason, str) and reason:
        cause = reason.split(": ", 1)[0]
        cause = cause if len(cause) <= CAUSE_MAX else cause[: CAUSE_MAX - 1] + "…"
        return f"{_ENDING[name]} — {cause}"
    return _SAID.get(name, name)


def _hook_said(kind: str, data: dict[str, Any]) -> str:
    """A hook's answer in plain words: waiting for approval, approved, stopped."""
    hook = f"hook {data.get('hook')} ({kind})"
    status = data.get("status")
    answered = f"answered HTTP {status}" if status is not None else "did not answer"
    if status is None and data.get("error"):
        answered += f" ({data['error']})"
    ok = data.get("result") == "ok"
    if kind.startswith("confirm-"):
        if ok:
            waited = data.get("waited_s")
            after = f" after {format_duration(waited)}" if isinstance(waited, int | float) else ""
            return f"approved — {hook} {answered}{after}"
        holds = "the step holds until it answers 2xx"
        return f"waiting for approval — {hook} {answered}; {holds}"
    summary = data.get("summary") or answered
    if kind == "pre-rollout":
        if ok:
            return f"pre-rollout hook {data.get('hook')} {answered}: the canary gets traffic next"
        return f"stopped before any traffic — pre-rollout hook {data.get('hook')} {summary}"
    return f"{kind} hook {data.get('hook')} {answered}"


def _facts(name: str, data: dict[str, Any], service: str) -> list[tuple[str, str]]:
    facts = [("Service", service)]
    if data.get("canary_version"):
        facts.append(("Version", str(data["canary_version"])))
    if data.get("stable_version"):
        facts.append(("Stable", str(data["stable_version"])))
    if data.get("step") is not None:
        steps = f" of {data['steps']}" if data.get("steps") else ""
        step = "before step 1" if data["step"] == 0 else data["step"]  # docs/events.md
        facts.append(("Step", f"{step}{steps}"))
    if data.get("weight") is not None:
        facts.append(("Weight", f"{data['weight']}%"))
    facts.append(("Outcome", _outcome(name, data)))
    if data.get("rollout_id"):
        facts.append(("Rollout", str(data["rollout_id"])))
    if name == "notification.dead-letter":
        facts += [("Sink", str(data.get("sink"))), ("Event", str(data.get("event_type")))]
    return facts


def _outcome(name: str, data: dict[str, Any]) -> str:
    area, _, verb = name.partition(".")
    if area == "rollout":
        return verb
    if area == "hook":
        ok = data.get("result") == "ok"
        if verb.startswith("confirm-"):
            return "approved" if ok else "waiting for approval"
        if verb == "pre-rollout":
            return "passed" if ok else "stopped before any traffic"
        return "answered" if ok else "no 2xx answer"
    return name


def next_steps(name: str, data: dict[str, Any]) -> list[str]:
    """The commands a person runs next, for this event."""
    rollout = data.get("rollout_id") or ""
    why = f"swiftdeploy audit why {rollout}".rstrip()
    if name in ("rollout.rolling-back", "rollout.rolled-back", "rollout.aborted"):
        return [f"read why: `{why}`",
                "fix the cause, then roll out again: `swiftdeploy rollout VERSION`"]  # fmt: skip
    if name == "rollout.held":
        return ["go on anyway (gated by the policy): `swiftdeploy promote`",
                "end it: `swiftdeploy abort`",
                "look again once there is more traffic: `swiftdeploy resume`",
                f"numbers: `swiftdeploy status`, `{why}`"]  # fmt: skip
    if name == "rollout.passed" and data.get("pause") == "manual":
        return ["next step: `swiftdeploy promote`", "end it: `swiftdeploy abort`"]
    if name == "rollout.paused":
        return ["carry on: `swiftdeploy resume`", "end it: `swiftdeploy abort`"]
    if name == "gate.refused":
        return [f"read why: `{why}`", "wait for more evidence, or "
                "`swiftdeploy promote --force --reason TEXT` (recorded as yours)"]  # fmt: skip
    if name.startswith("hook.confirm-") and data.get("result") != "ok":
        return [f"the step holds at its weight until hook {data.get('hook')} answers 2xx; "
                "its looks go on, so harm still rolls it back",
                "see the wait: `swiftdeploy status`", "end it: `swiftdeploy abort`"]  # fmt: skip
    if name == "hook.pre-rollout" and data.get("result") != "ok":
        return ["the rollout is rolled back: fix what the check found (or the check), then "
                "roll out again: `swiftdeploy rollout VERSION`", f"read why: `{why}`"]  # fmt: skip
    if name == "notification.dead-letter":
        return ["fix the sink (its URL, or the receiver); `swiftdeploy status` lists dead letters",
                "`swiftdeploy events` still has the event"]  # fmt: skip
    if name in ("driver.exited", "rollout.promoted"):
        return []
    return ["follow it: `swiftdeploy attach` or `swiftdeploy status`"]


# --- the bodies --------------------------------------------------------------------------


def body(kind: str, event: Event, context: Context) -> bytes:
    """The bytes POSTed to a sink of `kind` (slack, teams, webhook) for `event`."""
    if kind == "webhook":
        return _json(event)
    said = message(event, context)
    if kind == "slack":
        return _json(slack(said))
    if kind == "teams":
        return _json(teams(said))
    raise ValueError(f"no sink kind {kind!r}")


def _json(value: object) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def _mrkdwn(text: str) -> str:
    """Slack's three escapes: a reason can hold <, > or & and must not become markup."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def slack(said: Message) -> dict[str, Any]:
    """A Slack incoming-webhook message: `text` (notifications, clients without blocks)
    and Block Kit blocks."""
    fields = [{"type": "mrkdwn", "text": f"*{k}*\n{_mrkdwn(v)}"} for k, v in said.facts[:10]]
    blocks: list[dict[str, Any]] = [
        {"type": "header",
         "text": {"type": "plain_text", "text": _cut(said.headline, SLACK_HEADER_MAX)}},
        {"type": "section", "fields": fields},
    ]  # fmt: skip
    if said.why:
        why = "\n".join(f"• {_mrkdwn(line)}" for line in said.why)
        blocks.append(_slack_section(f"*Why*\n{why}"))
    if said.next_steps:
        steps = "\n".join(f"• {_mrkdwn(step)}" for step in said.next_steps)
        blocks.append(_slack_section(f"*Next*\n{steps}"))
    report = said.report
    link = f"<{report}|the report>" if report.startswith("http") else f"`{_mrkdwn(report)}`"
    blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": f"Report: {link}"}]})
    return {"text": _cut(said.text(), SLACK_TEXT_MAX), "blocks": blocks}


def _slack_section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": _cut(text, SLACK_TEXT_MAX)}}


_TEAMS_COLOR = {"bad": "Attention", "good": "Good", "info": "Default"}


def teams(said: Message) -> dict[str, Any]:
    """An MS Teams incoming-webhook (or Workflows) message carrying an Adaptive Card."""
    card_body: list[dict[str, Any]] = [
        {"type": "TextBlock", "text": said.headline, "weight": "Bolder", "size": "Medium",
         "wrap": True, "color": _TEAMS_COLOR[said.tone]},
        {"type": "FactSet", "facts": [{"title": k, "value": v} for k, v in said.facts]},
    ]  # fmt: skip
    for title, lines in (("Why", said.why), ("Next", said.next_steps)):
        if lines:
            card_body.append({"type": "TextBlock", "text": title, "weight": "Bolder"})
            card_body.append(
                {"type": "TextBlock", "text": "\n".join(f"- {x}" for x in lines), "wrap": True}
            )
    card: dict[str, Any] = {
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "type": "AdaptiveCard",
        "version": "1.4",
        "body": card_body,
    }
    if said.report.startswith("http"):
        card["actions"] = [{"type": "Action.OpenUrl", "title": "Report", "url": said.report}]
    else:
        card_body.append({"type": "TextBlock", "text": f"Report: {said.report}", "wrap": True})
    return {
        "type": "message",
        "attachments": [
            {"contentType": "application/vnd.microsoft.card.adaptive", "content": card}
        ],
    }
