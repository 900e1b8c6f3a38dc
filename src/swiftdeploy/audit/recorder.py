"""The audit trail's writer for the commands: actions, transitions and gate decisions,
each recorded before it is acted on. The review (`swiftdeploy.review`) reads what this
writes."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from swiftdeploy.audit import looks
from swiftdeploy.audit.log import ENVELOPE, AuditLog, Record, utc_timestamp
from swiftdeploy.audit.vocabulary import HOLD
from swiftdeploy.policy.base import Decision

# How long, and how many, looks are held back before they are written as one record.
FLUSH_S = 10.0
MAX_LOOKS = 100


class Recorder(Protocol):
    """Where actions, transitions and decisions are written before they are acted on."""

    def record(self, kind: str, **fields: Any) -> None: ...

    def flush(self) -> None:
        """Write what is held back (the engine's repeated holds); its owner calls this
        when it stops."""


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


@dataclass(frozen=True)
class _Held:
    """A look held back: what will be written, when it was taken, what it was given."""

    look: looks.Look
    at: datetime
    fields: dict[str, Any]


class AuditRecorder:
    """The fleet's recorder: every record goes to the audit trail before the action.

    A hold that repeats the last full hold record but for its numbers and messages is a
    look (swiftdeploy.audit.looks): looks are held back and written together, as one
    record, when anything else is recorded (first, so the trail keeps the order of
    events), when the first is FLUSH_S old, at MAX_LOOKS, and at `flush`.

    Holding them back is safe because a hold acts on nothing: the rule "recorded before
    acted on" is kept, as every action, transition and other decision writes the looks
    before it, and itself, before it is acted on. A process killed loses at most the
    last FLUSH_S of looks, which the state's ledger (state.json) still counts."""

    def __init__(self, log: AuditLog) -> None:
        self.log = log
        self._base: Record | None = None  # the last full hold this recorder wrote
        self._held: list[_Held] = []  # looks at it, not yet written

    def record(self, kind: str, **fields: Any) -> None:
        if kind == "decision" and self._hold_back(fields):
            return
        self.flush()
        written = self.log.append(kind, **fields)
        if kind == "decision" and written.get("action") == HOLD:
            self._base = written

    def flush(self) -> None:
        """Write the looks held back, as one record; left held if that cannot be done."""
        if not self._held:
            return
        assert self._base is not None  # looks are only held at a base
        base = self._base
        given = [held.look for held in self._held]
        fields = {**_frame(base), "decision": looks.pack(base, given)}
        # The record must give back exactly these looks, and no secret may be found in
        # it (its packed text could spell one by chance, and would be rewritten).
        if looks.same(looks.unpack(fields["decision"]), given) and looks.same(
            self.log.plain(fields), fields
        ):
            self.log.append("decision", **fields)
            self._held.clear()
            return
        while self._held:  # in full, as they were given (with the time they are written)
            self.log.append("decision", **self._held[0].fields)
            self._held.pop(0)

    def _hold_back(self, fields: dict[str, Any]) -> bool:
        """Whether `fields` is a look at the base's frame, now held back."""
        base = self._base
        if base is None or fields.get("action") != HOLD:
            return False
        given = {"command": self.log.command, "rollout_id": None, **fields}
        plain = {key: self.log.plain(value) for key, value in given.items()}
        decision = plain.pop("decision")
        if not looks.same(plain, _frame(base)):
            return False
        at = self.log.now()
        try:
            look = self.log.plain(looks.compact(base, decision, utc_timestamp(at)))
            # What will be written must give back exactly this decision.
            rebuilt = looks.rebuild(base, look)
        except looks.Misfit:
            return False
        if not looks.same(rebuilt, decision):
            return False
        self._held.append(_Held(look, at, fields))
        age = (at - self._held[0].at).total_seconds()
        if not 0 <= age < FLUSH_S or len(self._held) >= MAX_LOOKS:  # < 0: the clock went back
            self.flush()
        return True


def _frame(base: Record) -> dict[str, Any]:
    """What a look shares with its full record: every field but the log's and the decision."""
    return {k: v for k, v in base.items() if k not in ENVELOPE and k != "decision"}
