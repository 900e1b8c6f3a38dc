"""`swiftdeploy audit why`: a few lines on why a rollout ended as it did.

They name what decided it (the rollout engine's decision, or a person's command and
the policy decision before it), each reason's rule, observed value and threshold,
and the statistics behind them; the report shows the same lines per rollout.
"""

from __future__ import annotations

from collections.abc import Sequence

from swiftdeploy.audit.explain import Rollout, actor, record_at, rollouts, show_ts
from swiftdeploy.audit.log import Record
from swiftdeploy.errors import BadInputError


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
    lines = [headline(rollout)]
    # The split found not as the state said (restored, the step's evidence restarted):
    # what the decision below stands on was counted after the last of these.
    lines.extend(
        f"{record.get('ts')}: {record.get('reason')}"
        for record in rollout.records
        if record.get("kind") == "transition" and record.get("event") == "drift"
    )
    decisive = rollout.decisive
    manual = rollout.manual_command
    prefix = ""
    if manual is not None and (decisive is None or decisive.at <= record_at(manual)):
        command = " ".join(str(word) for word in manual.get("command", []))
        lines.append(
            f"{rollout.outcome} by hand: `{command}` by {actor(manual)} at {manual.get('ts')}"
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
    statistics = decisive.statistics_lines() or ["no statistics were recorded with this decision"]
    lines.extend(f"statistic: {text}" for text in statistics)
    return lines


def headline(rollout: Rollout) -> str:
    """`rollout r1 (canary v3, stable v2) was rolled back at step 1 (10% of traffic) ...`."""
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
    if not rollout.steps:
        return f"{name} was {rollout.outcome} at {when}, before its first step"
    if not rollout.decisions:
        return f"{name} was {rollout.outcome}{where} at {when}, before any look at the canary"
    return f"{name} was {rollout.outcome}{where} at {when}, after {len(rollout.steps)} step(s)"
