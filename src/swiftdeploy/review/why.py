"""`swiftdeploy audit why`: a few lines on why a rollout ended as it did.

They name what decided it (the rollout engine's decision, or a person's command and
the policy decision before it), each reason's rule, observed value and threshold,
and the statistics behind them; when no decision ended it, what did (its rollback's
reason: a pre-rollout hook's refusal, a canary never ready, an abort); and the gating
hooks' answers (an approval and how long it took). The report, the notifications and
`ci github`'s summary show the same lines.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import replace

from swiftdeploy.audit.log import Record
from swiftdeploy.audit.vocabulary import ROLLBACK_PREFIX, Phase
from swiftdeploy.durations import format_duration
from swiftdeploy.errors import BadInputError
from swiftdeploy.review.explain import (
    IN_PROGRESS,
    Rollout,
    actor,
    hook_words,
    number,
    record_at,
    rollouts,
    show_ts,
)

# The hooks that gate a rollout (notify/hooks.py GATES; audit is below notify).
GATE_TYPES = ("pre-rollout", "confirm-traffic-increase", "confirm-promotion")


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
    observed value, the threshold and the statistic behind the decision; what ended it
    when no policy decision did (a hook's refusal, a canary never ready, an abort), and
    the gating hooks it waited for."""
    rollout = pick_rollout(records, rollout_id)
    lines = [headline(rollout)]
    # The split found not as the state said (restored, the step's evidence restarted):
    # what the decision below stands on was counted after the last of these.
    lines.extend(
        f"{record.get('ts')}: {record.get('reason')}"
        for record in rollout.records
        if record.get("kind") == "transition" and record.get("event") == "drift"
    )
    # A rollout rolling back is told as the rollback it is becoming.
    ending = (
        replace(rollout, outcome="rolled back") if rollout.phase == Phase.ROLLING_BACK else rollout
    )
    decisive = ending.decisive
    manual = ending.manual_command
    prefix = ""
    if manual is not None and (decisive is None or decisive.at <= record_at(manual)):
        command = " ".join(str(word) for word in manual.get("command", []))
        lines.append(
            f"{ending.outcome} by hand: `{command}` by {actor(manual)} at {manual.get('ts')}"
        )
        decisive = rollout.decisions[-1] if rollout.decisions else None
        # A gated command (promote) has its own look; a rollback is never gated.
        own_look = decisive is not None and decisive.by_hand and decisive.at >= record_at(manual)
        prefix = (
            "the canary policy's decision on it: "
            if own_look
            else "the last policy decision before that: "
        )
    if decisive is None:
        if manual is None:
            lines.extend(ended_without_decision(rollout))
        return lines
    lines.append(
        f"{prefix}decision {decisive.decision_id or decisive.record.get('id')} by the "
        f"{decisive.engine} engine ({decisive.package}) at {decisive.step_name}, "
        f"{format_duration(rollout.offset(decisive.at))} into the rollout: {decisive.outcome}"
    )
    lines.extend(hook_lines(rollout))
    lines.extend(
        f"{reason.facts()}: {decisive.reason_sentence(reason)}"
        for reason in decisive.ordered_reasons()
    )
    statistics = decisive.statistics_lines() or ["no statistics were recorded with this decision"]
    lines.extend(f"statistic: {text}" for text in statistics)
    return lines


def ended_without_decision(rollout: Rollout) -> list[str]:
    """What ended a rollout that no policy decision ended: its rollback's reason (a
    pre-rollout hook's refusal, a canary that never became ready, an abort) and the
    gating hooks' answers; else that no decision was recorded."""
    rolling = [
        record
        for record in rollout.records
        if record.get("kind") == "transition" and record.get("phase_after") == Phase.ROLLING_BACK
    ]
    reason = rolling[-1].get("reason") if rolling else None
    if not isinstance(reason, str) or not reason:
        return ["no policy decision was recorded for this rollout", *hook_lines(rollout)]
    cause = reason.removeprefix(ROLLBACK_PREFIX)
    at = rollout.offset(record_at(rolling[-1]))
    return [f"rolled back {format_duration(at)} into the rollout: {cause}", *hook_lines(rollout)]


def hook_lines(rollout: Rollout) -> list[str]:
    """The gating hooks' answers, one line per hook and step: the last answer, and how
    long and how many answers it took (an approval after a wait, or a wait unanswered)."""
    asked: dict[tuple[object, object], list[Record]] = {}
    for record in rollout.records:
        if record.get("kind") == "hook" and record.get("type") in GATE_TYPES:
            asked.setdefault((record.get("hook"), record.get("step_index")), []).append(record)
    return [_hook_line(rollout, calls) for calls in asked.values()]


def _hook_line(rollout: Rollout, calls: list[Record]) -> str:
    last = calls[-1]
    kind = last.get("type")
    index = last.get("step_index")
    if kind == "pre-rollout" or not isinstance(index, int):
        where = "before step 1"
    else:
        where = f"after step {index + 1} passed"
    into = format_duration(rollout.offset(record_at(last)))
    said = f"{hook_words(last)} {where}, {into} into the rollout"
    if last.get("result") == "ok":
        said = ("approved: " if kind != "pre-rollout" else "passed: ") + said
    if len(calls) == 1:
        return said
    first = calls[0]
    began = record_at(first).timestamp() - (number(first.get("elapsed_s")) or 0.0)
    waited = format_duration(max(record_at(last).timestamp() - began, 0.0))
    earlier = Counter(_short(call) for call in calls[:-1])
    answers = ", ".join(f"{text} x {n}" if n > 1 else text for text, n in earlier.items())
    if last.get("result") == "ok":
        return f"{said}, after waiting {waited} ({answers} before)"
    return f"{said}; asked {len(calls)} times over {waited} ({answers} before), no 2xx yet"


def _short(call: Record) -> str:
    status = call.get("status")
    return f"HTTP {status}" if isinstance(status, int) else "no answer"


def _judged(rollout: Rollout) -> str | None:
    """A judge's analysis (`swiftdeploy judge serve`): its trail has answers, no
    transitions, and the judge never learns what the controller did with them, so the
    headline says what it answered last rather than "still in progress"."""
    if rollout.phase is not None or not rollout.decisions:
        return None
    last = rollout.decisions[-1]
    if not isinstance(last.record.get("analysis"), str):
        return None
    controller = last.record.get("controller")
    by = f" for {controller}" if isinstance(controller, str) else ""
    versions = f" ({rollout.versions})" if rollout.versions else ""
    return (
        f"analysis {rollout.rollout_id}{versions}{by}: {len(rollout.decisions)} answers, the "
        f"last {last.verdict} at {show_ts(rollout.end)}"
    )


def headline(rollout: Rollout) -> str:
    """`rollout r1 (canary v3, stable v2) was rolled back at step 1 (10% of traffic) ...`."""
    where = f" at {rollout.steps[-1].name}" if rollout.steps else ""
    when = show_ts(rollout.end)
    name = f"rollout {rollout.rollout_id}"
    if rollout.versions:
        name += f" ({rollout.versions})"
    if rollout.phase == Phase.ROLLING_BACK:
        return f"{name} is being rolled back{where}, last record {when}"
    judged = _judged(rollout)
    if judged is not None:
        return judged
    if rollout.outcome == IN_PROGRESS:
        return (
            f"{name} is still in progress (phase {rollout.phase or 'unknown'}){where}, "
            f"last record {when}"
        )
    if not rollout.steps:
        return f"{name} was {rollout.outcome} at {when}, before its first step"
    if not rollout.decisions:
        return f"{name} was {rollout.outcome}{where} at {when}, before any look at the canary"
    return f"{name} was {rollout.outcome}{where} at {when}, after {len(rollout.steps)} step(s)"
