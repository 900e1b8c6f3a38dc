"""The audit trail's writer for the commands: actions, transitions and gate decisions,
each recorded before it is acted on. `explain` and `why` read what this writes."""

from __future__ import annotations

from typing import Any, Protocol

from swiftdeploy.audit import looks
from swiftdeploy.audit.log import ENVELOPE, AuditLog, Record
from swiftdeploy.policy.base import Decision


class Recorder(Protocol):
    """Where actions, transitions and decisions are written before they are acted on."""

    def record(self, kind: str, **fields: Any) -> None: ...


def record_decision(
    recorder: Recorder,
    decision: Decision,
    package: str,
    policy_input: dict[str, Any],
    measurements: dict[str, Any],
    statistics: dict[str, Any],
    **fields: Any,
) -> None:
    """A gate decision with everything needed to explain or replay it later."""
    recorder.record(
        "decision",
        decision={
            "engine": decision.engine,
            "package": package,
            "decision_id": decision.decision_id,
            "input": policy_input,
            "output": decision.model_dump(mode="json"),
            "measurements": measurements,
            "statistics": statistics,
            "thresholds": policy_input["thresholds"],
            "step": policy_input.get("step"),
        },
        **fields,
    )


class AuditRecorder:
    """The fleet's recorder: every record goes to the audit trail before the action.

    A hold that repeats the last full hold record but for its numbers and messages is
    written as a look record relative to it (swiftdeploy.audit.looks)."""

    def __init__(self, log: AuditLog) -> None:
        self.log = log
        self._base: Record | None = None  # the last full hold this recorder wrote

    def record(self, kind: str, **fields: Any) -> None:
        if kind == "decision":
            fields = self._as_look(fields)
        written = self.log.append(kind, **fields)
        full = kind == "decision" and not looks.is_look(written)
        if full and written.get("action") == looks.HOLD:
            self._base = written

    def _as_look(self, fields: dict[str, Any]) -> dict[str, Any]:
        """`fields` with a look record's decision, when it is a look at the base's frame."""
        base = self._base
        if base is None or fields.get("action") != looks.HOLD:
            return fields
        given = {"command": self.log.command, "rollout_id": None, **fields}
        plain = {key: self.log.plain(value) for key, value in given.items()}
        decision = plain.pop("decision")
        frame = {k: v for k, v in base.items() if k not in ENVELOPE and k != "decision"}
        if not looks.same(plain, frame):
            return fields
        try:
            look = self.log.plain(looks.compact(base, decision))
            # What will be written must give back exactly this decision.
            rebuilt = looks.expand_decision(base, {"decision": look})
        except looks.Misfit:
            return fields
        if not looks.same(rebuilt, decision):
            return fields
        return {**fields, "decision": look}
