"""From audit records to rollouts, steps and decisions, told in plain words.

Pure functions over the records (no files): the report, `why` and the exports
are built from these views. Every sentence is made from what the decision record
holds: the policy's reasons (rule, observed, threshold) and the input's
measurements and sequential-test statistics (docs/policy-input.md). A field that
is missing reads "n/a"; nothing here raises on an odd record.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from swiftdeploy.audit.log import Record

TERMINAL = {"promoted": "promoted", "rolled-back": "rolled back", "failed": "failed"}
# The rules an engine makes up when it cannot decide (swiftdeploy.policy.base); kept
# here too, so that a trail written by an older or newer version still reads right.
FAILURE_RULES = frozenset(
    {
        "engine_unreachable",
        "engine_error",
        "undefined_result",
        "malformed_result",
        "compile_error",
        "invalid_input",
    }
)
KINDS_OF_TEST = ("errors", "latency")
HARM_RULES = frozenset({"errors_harm", "latency_harm"})
_REASON_ORDER = {"max_error_rate": 0, "max_p99_ms": 0, "canary_unhealthy": 0}
_REASON_ORDER.update(dict.fromkeys(HARM_RULES, 1))
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


# --- numbers in words -----------------------------------------------------------------


def number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def pct(value: object) -> str:
    """A fraction as a percentage: 0.052 -> 5.2%."""
    x = number(value)
    if x is None:
        return "n/a"
    shown = x * 100
    if shown == 0 or abs(shown) >= 0.1:
        return f"{shown:.1f}%"
    return f"{shown:.2g}%"


def ms(value: object) -> str:
    x = number(value)
    if x is None:
        return "n/a"
    return f"{x:.0f} ms" if abs(x) >= 10 else f"{x:.1f} ms"


def evalue(value: object) -> str:
    x = number(value)
    if x is None:
        return "n/a"
    if abs(x) >= 1e6:
        return f"{x:.2e}"
    if abs(x) >= 100:
        return f"{x:.0f}"
    return f"{x:.2f}" if abs(x) < 10 else f"{x:.1f}"


def seconds(value: object) -> str:
    x = number(value)
    return "n/a" if x is None else f"{x:.1f} s"


def count(value: object) -> str:
    x = number(value)
    return "n/a" if x is None else f"{x:.0f}"


def plain(value: object) -> str:
    x = number(value)
    if x is not None:
        return f"{x:g}"
    return "n/a" if value is None else str(value)


def percent(value: object) -> str:
    x = number(value)
    return "n/a" if x is None else f"{x:g}%"


def gigabytes(value: object) -> str:
    x = number(value)
    return "n/a" if x is None else f"{x:g} GB"


# How a rule's observed value and threshold read, and which sequential test backs it.
RULE_FORMAT: dict[str, Callable[[object], str]] = {
    "max_error_rate": pct,
    "max_p99_ms": ms,
    "errors_harm": evalue,
    "latency_harm": evalue,
    "inconclusive": evalue,
    "min_requests": count,
    "min_duration": seconds,
    "timeout": seconds,
    "no_harm": seconds,
    "min_disk_free_gb": gigabytes,
    "max_load_per_core": plain,
    "min_mem_available_pct": percent,
}
RULE_TEST = {
    "max_error_rate": "errors",
    "errors_harm": "errors",
    "max_p99_ms": "latency",
    "latency_harm": "latency",
}


def as_mapping(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def parse_ts(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def show_ts(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] + "Z"


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-") or "rollout"


# --- a decision -----------------------------------------------------------------------


@dataclass(frozen=True)
class Track:
    """One track's measurement at a decision (the `canary`/`stable` shape of the input)."""

    status: str | None
    requests: float | None
    errors: float | None
    error_rate: float | None
    p99_ms: float | None

    @classmethod
    def of(cls, *sources: Mapping[str, Any]) -> Track:
        """From the recorded measurement (a Measurement dump, with `quantiles`) and the
        policy input's track (with `p99_ms`): the first source that has a field wins."""

        def first(key: str) -> float | None:
            for source in sources:
                value = number(source.get(key))
                if value is None and key == "p99_ms":
                    value = number(as_mapping(source.get("quantiles")).get("p99"))
                if value is not None:
                    return value
            return None

        status = next((s["status"] for s in sources if isinstance(s.get("status"), str)), None)
        return cls(
            status=status,
            requests=first("requests"),
            errors=first("errors"),
            error_rate=first("error_rate"),
            p99_ms=first("p99_ms"),
        )

    @property
    def usable(self) -> bool:
        return self.status in (None, "ok")


@dataclass(frozen=True)
class Reason:
    rule: str
    message: str
    observed: Any
    threshold: Any

    @classmethod
    def of(cls, data: object) -> Reason:
        item = as_mapping(data)
        rule, message = item.get("rule"), item.get("message")
        return cls(
            rule=rule if isinstance(rule, str) else "unknown",
            message=message if isinstance(message, str) else "",
            observed=item.get("observed"),
            threshold=item.get("threshold"),
        )

    def facts(self) -> str:
        """`rule max_error_rate: observed 5.2%, threshold 1.0%`."""
        shown = RULE_FORMAT.get(self.rule, plain)
        return (
            f"rule {self.rule}: observed {shown(self.observed)}, threshold {shown(self.threshold)}"
        )


@dataclass(frozen=True)
class Decision:
    record: Record
    at: datetime
    package: str
    engine: str
    decision_id: str | None
    verdict: str
    reasons: tuple[Reason, ...]
    step_index: int | None
    step_weight: float | None
    elapsed_s: float | None
    canary: Track
    stable: Track
    statistics: Mapping[str, Any]
    thresholds: Mapping[str, Any]
    alpha: float | None
    input: Mapping[str, Any]
    output: Mapping[str, Any]
    action: str  # what was done: the verdict, or on_timeout for a hold at max_duration

    @property
    def rollout_id(self) -> str | None:
        value = self.record.get("rollout_id")
        return value if isinstance(value, str) else None

    @property
    def failed(self) -> bool:
        """The engine could not decide; this is a fail-closed stand-in."""
        return any(reason.rule in FAILURE_RULES for reason in self.reasons)

    @property
    def step_name(self) -> str:
        if self.step_index is None:
            return "-"
        weight = f" ({self.step_weight:g}% of traffic)" if self.step_weight is not None else ""
        return f"step {self.step_index + 1}{weight}"

    def test(self, kind: str) -> str | None:
        """In words: `sequential test on errors: e = 812 >= 100 (alpha = 0.01)`."""
        stat = as_mapping(self.statistics.get(kind))
        e = number(stat.get("e_value"))
        if e is None:
            return None
        text = f"sequential test on {kind}: e = {evalue(e)}"
        if self.alpha:
            bar = 1 / self.alpha
            text += f" {'>=' if e >= bar else '<'} {evalue(bar)} (alpha = {self.alpha:g})"
        return text

    def test_details(self, kind: str) -> str | None:
        """The statistic behind a rule, with its counts, for `why`."""
        stat = as_mapping(self.statistics.get(kind))
        text = self.test(kind)
        if text is None:
            return None
        parts = [text]
        verdict = stat.get("verdict")
        if isinstance(verdict, str):
            parts.append(f"verdict {verdict}")
        if number(stat.get("p_value")) is not None:
            parts.append(f"p-value {number(stat.get('p_value')):.3g}")
        events = "errors" if kind == "errors" else "slow requests"
        parts.append(
            f"canary {count(stat.get('canary_events'))} {events} in "
            f"{count(stat.get('canary_n'))}, stable {count(stat.get('stable_events'))} in "
            f"{count(stat.get('stable_n'))}"
        )
        return "; ".join(parts)

    def reason_sentence(self, reason: Reason) -> str:
        canary, stable = self.canary, self.stable
        stable_note = "n/a" if not stable.usable else None
        if reason.rule == "max_error_rate":
            return (
                f"canary error rate {pct(reason.observed)} > {pct(reason.threshold)} "
                f"(stable {stable_note or pct(stable.error_rate)}; "
                f"{count(canary.requests)} requests)"
            )
        if reason.rule == "max_p99_ms":
            return (
                f"canary p99 latency {ms(reason.observed)} > {ms(reason.threshold)} "
                f"(stable {stable_note or ms(stable.p99_ms)}; {count(canary.requests)} requests)"
            )
        if reason.rule in HARM_RULES:
            kind = reason.rule.split("_", 1)[0]
            test = self.test(kind) or f"sequential test on {kind}: e = {evalue(reason.observed)}"
            return f"{test}: canary {kind} worse than stable"
        if reason.rule == "inconclusive":
            return f"no verdict yet: {reason.message or 'sequential test inconclusive'}"
        if reason.rule == "min_requests":
            return (
                f"only {count(reason.observed)} canary requests, {count(reason.threshold)} needed"
            )
        if reason.rule == "min_duration":
            return (
                f"the step has run {seconds(reason.observed)} of its minimum "
                f"{seconds(reason.threshold)}"
            )
        if reason.rule == "timeout":
            return (
                f"no decision after {seconds(reason.observed)} (maximum "
                f"{seconds(reason.threshold)}), so on_timeout applied"
            )
        if reason.rule == "no_harm":
            tests = [t for kind in KINDS_OF_TEST if (t := self.test(kind))]
            return (
                f"no harm found after {seconds(reason.observed)}: "
                + (", ".join(tests) if tests else "both sequential tests passed")
                + f"; canary error rate {pct(canary.error_rate)}, p99 {ms(canary.p99_ms)} "
                f"over {count(canary.requests)} requests"
            )
        if reason.rule in FAILURE_RULES:
            return (
                f"the policy engine could not decide ({reason.rule}), so it failed closed: "
                f"{reason.message}"
            )
        return reason.message or reason.facts()

    def ordered_reasons(self) -> list[Reason]:
        """Threshold rules first, then the sequential tests, then the rest."""
        return sorted(self.reasons, key=lambda r: _REASON_ORDER.get(r.rule, 2))

    def sentence(self) -> str:
        """Every reason, the statistic behind them, and the verdict, in one line."""
        parts = [self.reason_sentence(reason) for reason in self.ordered_reasons()]
        mentioned = {RULE_TEST[r.rule] for r in self.reasons if r.rule in HARM_RULES}
        for kind in dict.fromkeys(RULE_TEST[r.rule] for r in self.reasons if r.rule in RULE_TEST):
            test = self.test(kind)
            if kind not in mentioned and test:
                parts.append(test)
        if not parts:
            parts.append("no reasons given")
        return "; ".join(parts) + f" → {self.outcome}"

    @property
    def outcome(self) -> str:
        """`rollback`, or `hold, so rollback` when the engine applied on_timeout."""
        return self.verdict if self.action == self.verdict else f"{self.verdict}, so {self.action}"


def decision_of(record: Record) -> Decision | None:
    """The decision view of a `decision` record (None for any other record)."""
    if record.get("kind") != "decision":
        return None
    data = as_mapping(record.get("decision"))
    given_input = as_mapping(data.get("input"))
    output = as_mapping(data.get("output"))
    measurements = as_mapping(data.get("measurements"))
    step = as_mapping(data.get("step")) or as_mapping(given_input.get("step"))
    thresholds = as_mapping(data.get("thresholds")) or as_mapping(given_input.get("thresholds"))
    statistics = as_mapping(data.get("statistics")) or as_mapping(given_input.get("statistics"))
    alpha = number(given_input.get("alpha"))
    if alpha is None:
        alpha = number(thresholds.get("alpha"))
    verdict = output.get("verdict")
    if not isinstance(verdict, str):
        verdict = "promote" if output.get("allow") is True else "rollback"
    action = record.get("action")  # what was done, when it differs (a hold at the limit)
    raw_reasons = output.get("reasons")
    index = number(step.get("index"))
    decision_id = data.get("decision_id")
    return Decision(
        record=record,
        at=parse_ts(record.get("ts")) or _EPOCH,
        package=str(data.get("package") or "unknown"),
        engine=str(data.get("engine") or "unknown"),
        decision_id=decision_id if isinstance(decision_id, str) else None,
        verdict=verdict,
        reasons=tuple(Reason.of(r) for r in (raw_reasons if isinstance(raw_reasons, list) else [])),
        step_index=int(index) if index is not None else None,
        step_weight=number(step.get("weight")),
        elapsed_s=number(step.get("elapsed_s")),
        canary=Track.of(
            as_mapping(measurements.get("canary")), as_mapping(given_input.get("canary"))
        ),
        stable=Track.of(
            as_mapping(measurements.get("stable")), as_mapping(given_input.get("stable"))
        ),
        action=action if isinstance(action, str) else verdict,
        statistics=statistics,
        thresholds=thresholds,
        alpha=alpha,
        input=given_input,
        output=output,
    )


# --- a rollout ------------------------------------------------------------------------


@dataclass
class Step:
    index: int
    weight: float | None
    start: datetime
    decisions: list[Decision] = field(default_factory=list)

    @property
    def name(self) -> str:
        weight = f" ({self.weight:g}% of traffic)" if self.weight is not None else ""
        return f"step {self.index + 1}{weight}"

    @property
    def last(self) -> Decision | None:
        return self.decisions[-1] if self.decisions else None


@dataclass
class Rollout:
    rollout_id: str
    records: list[Record]
    start: datetime
    end: datetime
    decisions: list[Decision]
    steps: list[Step]
    outcome: str  # promoted | rolled back | failed | in progress
    phase: str | None
    stable_version: str | None
    canary_version: str | None

    def offset(self, moment: datetime) -> float:
        return max(0.0, (moment - self.start).total_seconds())

    @property
    def chaos(self) -> list[Record]:
        return [r for r in self.records if r.get("kind") == "chaos"]

    @property
    def decisive(self) -> Decision | None:
        """The decision that ended the rollout (or the latest one, while in progress)."""
        wanted = {"rolled back": "rollback", "promoted": "promote", "failed": "rollback"}
        action = wanted.get(self.outcome)
        if action:
            matching = [d for d in self.decisions if d.action == action]
            return matching[-1] if matching else None
        return self.decisions[-1] if self.decisions else None

    @property
    def manual_command(self) -> Record | None:
        """The command record of a hand-made rollback or promote after the last decision."""
        verb = {"rolled back": "rollback", "promoted": "promote"}.get(self.outcome)
        if verb is None:
            return None
        last_decision = self.decisions[-1].at if self.decisions else _EPOCH
        for record in reversed(self.records):
            command = record.get("command")
            if (
                record.get("kind") == "command"
                and isinstance(command, list)
                and verb in command
                and (parse_ts(record.get("ts")) or _EPOCH) >= last_decision
            ):
                return record
        return None

    @property
    def versions(self) -> str:
        """`canary v3, stable v2`; empty when no record named them."""
        known = [
            f"{track} {version}"
            for track, version in (("canary", self.canary_version), ("stable", self.stable_version))
            if version
        ]
        return ", ".join(known)


def _step_of(record: Record, decision: Decision | None) -> tuple[int | None, float | None]:
    if decision is not None:
        return decision.step_index, decision.step_weight
    step = as_mapping(record.get("step"))
    index = number(step.get("index"))
    if index is None:
        index = number(record.get("step_index"))
    weight = number(step.get("weight"))
    for key in ("weight", "canary_weight"):
        weight = number(record.get(key)) if weight is None else weight
    return (int(index) if index is not None else None), weight


def build_rollout(rollout_id: str, records: list[Record]) -> Rollout:
    times = [t for r in records if (t := parse_ts(r.get("ts")))]
    start = min(times, default=_EPOCH)
    decisions: list[Decision] = []
    steps: dict[int, Step] = {}
    phase: str | None = None
    versions: dict[str, str] = {}
    for record in records:
        decision = decision_of(record)
        if decision is not None:
            decisions.append(decision)
        index, weight = _step_of(record, decision)
        if index is not None:
            step = steps.setdefault(index, Step(index, weight, parse_ts(record.get("ts")) or start))
            # A decision knows its step's weight; a transition may say 0 (starting,
            # rolling back), which only stands until a real weight is seen.
            if weight is not None and (decision is not None or not step.weight):
                step.weight = weight
            if decision is not None:
                step.decisions.append(decision)
        if record.get("kind") == "transition" and isinstance(record.get("phase_after"), str):
            phase = record["phase_after"]
        for key in ("stable_version", "canary_version"):
            # The versions the rollout started with; later records may move them.
            if isinstance(record.get(key), str):
                versions.setdefault(key, record[key])
    outcome = TERMINAL.get(phase or "", "in progress")
    return Rollout(
        rollout_id=rollout_id,
        records=records,
        start=start,
        end=max(times, default=start),
        decisions=decisions,
        steps=[steps[i] for i in sorted(steps)],
        outcome=outcome,
        phase=phase,
        stable_version=versions.get("stable_version"),
        canary_version=versions.get("canary_version"),
    )


def rollouts(records: Iterable[Record]) -> list[Rollout]:
    """Every rollout in the records, oldest first (by its first record)."""
    grouped: dict[str, list[Record]] = {}
    for record in records:
        rollout_id = record.get("rollout_id")
        if isinstance(rollout_id, str) and rollout_id:
            grouped.setdefault(rollout_id, []).append(record)
    built = [build_rollout(rollout_id, group) for rollout_id, group in grouped.items()]
    return sorted(built, key=lambda r: r.start)


def violations(records: Iterable[Record]) -> list[tuple[Decision, Reason]]:
    """Every reason of a decision that denied (rolled back or refused the action)."""
    found: list[tuple[Decision, Reason]] = []
    for record in records:
        decision = decision_of(record)
        if decision is not None and decision.action == "rollback":
            found.extend((decision, reason) for reason in decision.reasons)
    return found


# --- one line per record, for the timeline --------------------------------------------


def _argv(record: Record) -> str:
    command = record.get("command")
    if not isinstance(command, list) or not command:
        return ""
    words = [str(word) for word in command]
    words[0] = words[0].rsplit("/", 1)[-1]
    return " ".join(words)


def chaos_summary(record: Record) -> str:
    if record.get("recover"):
        return f"chaos recovered on {record.get('track', 'all tracks')}"
    parts = [f"chaos on {record.get('track', '?')}"]
    if number(record.get("error_rate")) is not None:
        parts.append(f"error rate {pct(record.get('error_rate'))}")
    if number(record.get("latency_ms")) is not None:
        parts.append(f"+{ms(record.get('latency_ms'))} latency")
    if number(record.get("duration_s")) is not None:
        parts.append(f"for {seconds(record.get('duration_s'))}")
    return ", ".join(parts)


_QUIET = {"id", "seq", "ts", "actor", "command", "rollout_id", "kind", "prev_hash", "hash"}


def summary(record: Record) -> str:
    kind = record.get("kind")
    if kind == "command":
        return f"$ {_argv(record)}"
    if kind == "transition":
        text = f"{record.get('phase_before')} → {record.get('phase_after')}"
        index, weight = _step_of(record, None)
        if index is not None:
            text += f" at step {index + 1}"
        if weight is not None:
            text += f" ({weight:g}%)"
        reason = record.get("reason")
        return f"{text}: {reason}" if isinstance(reason, str) and reason else text
    decision = decision_of(record)
    if decision is not None:
        return f"{decision.package} {decision.step_name}: {decision.sentence()}"
    if kind == "chaos":
        return chaos_summary(record)
    extra = {k: v for k, v in record.items() if k not in _QUIET}
    return ", ".join(f"{k}={v}" for k, v in extra.items())[:300]


def actor(record: Record) -> str:
    who = as_mapping(record.get("actor"))
    return f"{who.get('user', '?')}@{who.get('host', '?')} pid {who.get('pid', '?')}"
