"""From audit records to rollouts, steps and decisions, told in plain words.

Pure functions over the records (no files): the report, `why` and the exports
are built from these views. Every sentence is made from what the decision record
holds: the policy's reasons (rule, message, observed, threshold) and the input's
measurements and statistics (docs/policy-input.md). A field that is missing reads
"n/a"; nothing here raises on an odd record. A looks record (swiftdeploy.audit.looks)
holds several looks relative to an earlier record: `rollouts` and `violations` rebuild
them first; `decision_of` reads one record, so give it records from `looks.expand`.

The views are called DecisionView and ReasonView so that they are never mistaken
for the policy engine's own `swiftdeploy.policy.base.Decision` and `Reason`.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from swiftdeploy.audit.log import Record
from swiftdeploy.audit.looks import expand, is_look
from swiftdeploy.audit.vocabulary import (
    ENDED_PHASES,
    ENGINE_ACTIONS,
    FAILURE_RULES,
    HELD,
    HOLD,
    LIVE_PHASES,
    PROMOTE,
    ROLLBACK,
)
from swiftdeploy.durations import format_duration

# A rollout's outcome in words, by the phase it ended in: `rolled-back` reads `rolled back`.
OUTCOME_OF_PHASE: dict[str, str] = {phase: phase.replace("-", " ") for phase in ENDED_PHASES}
IN_PROGRESS = "in progress"
# The canary policy's harm rules: observed is the test's e-value, threshold is alpha.
HARM_RULES = frozenset({"errors_harm", "latency_harm", "max_error_rate", "max_p99_ms"})
# Reasons read best harm first, then what evidence is missing, then the rest.
_REASON_ORDER = dict.fromkeys(HARM_RULES, 0) | {"canary_unhealthy": 0, "needs_evidence": 1}
# Commands by which a person ends a rollout, by the outcome they lead to.
HAND_VERBS = {"rolled back": ("rollback", "abort"), "promoted": ("promote",)}
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


# --- numbers in words -----------------------------------------------------------------


def number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def _or_na(shown: Callable[[float], str]) -> Callable[[object], str]:
    """A formatter: a number as `shown` writes it, anything else (None, text) as n/a."""

    def formatter(value: object) -> str:
        x = number(value)
        return "n/a" if x is None else shown(x)

    return formatter


@_or_na
def pct(x: float) -> str:
    """A fraction as a percentage: 0.052 -> 5.2%."""
    shown = x * 100
    if shown == 0 or abs(shown) >= 0.1:
        return f"{shown:.1f}%"
    return f"{shown:.2g}%"


@_or_na
def ms(x: float) -> str:
    return f"{x:.0f} ms" if abs(x) >= 10 else f"{x:.1f} ms"


@_or_na
def evalue(x: float) -> str:
    if abs(x) >= 1e6:
        return f"{x:.2e}"
    if abs(x) >= 100:
        return f"{x:.0f}"
    return f"{x:.2f}" if abs(x) < 10 else f"{x:.1f}"


duration = _or_na(format_duration)  # seconds, as `34 s`, `1 min 40 s`, `12 min`
count = _or_na("{:.0f}".format)
percent = _or_na("{:g}%".format)
gigabytes = _or_na("{:g} GB".format)


def plain(value: object) -> str:
    if isinstance(value, bool):  # as the policy wrote it (JSON), not Python's True
        return "true" if value else "false"
    x = number(value)
    if x is not None:
        return f"{x:g}"
    return "n/a" if value is None else str(value)


# How a rule's observed value and threshold read: (observed, threshold, their names).
RULE_FACTS: dict[str, tuple[Callable[[object], str], Callable[[object], str], str, str]] = {
    "errors_harm": (evalue, plain, "e-value", "alpha"),
    "latency_harm": (evalue, plain, "e-value", "alpha"),
    "max_error_rate": (evalue, plain, "e-value", "alpha"),
    "max_p99_ms": (evalue, plain, "e-value", "alpha"),
    "needs_evidence": (count, count, "canary requests", "needed for the power"),
    "min_duration": (duration, duration, "ran", "minimum"),
    "passed": (duration, duration, "ran", "minimum"),
    "min_disk_free_gb": (gigabytes, gigabytes, "observed", "threshold"),
    "max_load_per_core": (plain, plain, "observed", "threshold"),
    "min_mem_available_pct": (percent, percent, "observed", "threshold"),
}
# The test in the statistics behind each rule (docs/policy-input.md).
RULE_TEST = {
    "errors_harm": "errors",
    "latency_harm": "latency",
    "max_error_rate": "error_rate",
    "max_p99_ms": "p99",
}
TESTS = ("errors", "latency", "error_rate", "p99")
TEST_NAMES = {
    "errors": "errors against stable",
    "latency": "latency against stable",
    "error_rate": "error rate against thresholds.max_error_rate",
    "p99": "p99 against thresholds.max_p99_ms",
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


def record_at(record: Record) -> datetime:
    return parse_ts(record.get("ts")) or _EPOCH


def show_ts(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] + "Z"


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-") or "rollout"


def answer_words(status: object, answer: object, error: object) -> str:
    """A hook's answer in words: `answered HTTP 500: <short body>` or `did not answer:
    timed out after 2s` (notify/hooks.py; the trail's `hook` records)."""
    if not isinstance(status, int) or isinstance(status, bool):
        return f"did not answer: {error if isinstance(error, str) and error else 'no reply'}"
    text = answer if isinstance(answer, str) else "" if answer is None else json.dumps(answer)
    short = " ".join(text.split())[:120]
    return f"answered HTTP {status}" + (f": {short}" if short else "")


def hook_words(record: Record) -> str:
    """`hook smoke (pre-rollout) answered HTTP 500: <short body>`, from a `hook` record."""
    said = answer_words(record.get("status"), record.get("answer"), record.get("error"))
    return f"hook {record.get('hook')} ({record.get('type')}) {said}"


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
class ReasonView:
    rule: str
    message: str
    observed: Any
    threshold: Any

    @classmethod
    def of(cls, data: object) -> ReasonView:
        item = as_mapping(data)
        rule, message = item.get("rule"), item.get("message")
        return cls(
            rule=rule if isinstance(rule, str) else "unknown",
            message=message if isinstance(message, str) else "",
            observed=item.get("observed"),
            threshold=item.get("threshold"),
        )

    def facts(self) -> str:
        """`rule errors_harm: e-value 412, alpha 0.01`."""
        observed, threshold, observed_name, threshold_name = RULE_FACTS.get(
            self.rule, (plain, plain, "observed", "threshold")
        )
        return (
            f"rule {self.rule}: {observed_name} {observed(self.observed)}, "
            f"{threshold_name} {threshold(self.threshold)}"
        )


@dataclass(frozen=True)
class DecisionView:
    record: Record
    at: datetime
    package: str
    engine: str
    decision_id: str | None
    verdict: str
    reasons: tuple[ReasonView, ...]
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
    # What was done: the verdict, "held" when the step reached max_duration undecided,
    # or a gate's action ("promote --all", "refused", "forced promote", ...).
    action: str
    requested: str | None  # what a person asked the canary gate for; None for the engine

    @property
    def rollout_id(self) -> str | None:
        value = self.record.get("rollout_id")
        return value if isinstance(value, str) else None

    @property
    def failed(self) -> bool:
        """The engine could not decide; this is a fail-closed stand-in."""
        return any(reason.rule in FAILURE_RULES for reason in self.reasons)

    @property
    def by_hand(self) -> bool:
        """A canary gate's look before a person's command, not the rollout engine's."""
        return self.requested is not None

    @property
    def step_name(self) -> str:
        if self.step_index is None:
            return "-"
        weight = f" ({self.step_weight:g}% of traffic)" if self.step_weight is not None else ""
        return f"step {self.step_index + 1}{weight}"

    def test(self, kind: str) -> str | None:
        """In words: `errors against stable: e = 812 (weight 0.6 of alpha)`."""
        stat = as_mapping(self.statistics.get(kind))
        e = number(stat.get("e_value"))
        if e is None:
            return None
        name = TEST_NAMES.get(kind, kind)
        weight = number(stat.get("weight"))
        share = f" (weight {weight:g} of alpha)" if weight is not None else ""
        return f"{name}: e = {evalue(e)}{share}"

    def harm(self) -> str | None:
        """`evidence of harm 120 >= 100 = 1/alpha`: the weighted mean of the tests' e-values."""
        harm = as_mapping(self.statistics.get("harm"))
        e, bar = number(harm.get("e_value")), number(harm.get("threshold"))
        if e is None or bar is None:
            return None
        return f"evidence of harm {evalue(e)} {'>=' if e >= bar else '<'} {evalue(bar)} = 1/alpha"

    def test_details(self, kind: str) -> str | None:
        """The statistic behind a rule, with its counts and where it stands, for `why`."""
        stat = as_mapping(self.statistics.get(kind))
        text = self.test(kind)
        if text is None:
            return None
        parts = [text]
        if kind in ("errors", "error_rate"):
            events = "errors"
        else:
            above = number(stat.get("slow_above_ms"))
            events = "slow requests" + (f" (over {ms(above)})" if above is not None else "")
        counts = (
            f"canary {count(stat.get('canary_events'))} {events} in {count(stat.get('canary_n'))}"
        )
        if number(stat.get("stable_n")) is not None:
            counts += (
                f", stable {count(stat.get('stable_events'))} in {count(stat.get('stable_n'))}"
            )
        parts.append(counts)
        passed_by = stat.get("passed_by")
        if stat.get("verdict") == "harm":
            parts.append("carries the evidence of harm")
        elif stat.get("warming_up") and isinstance(stat.get("note"), str):
            parts.append(str(stat["note"]))  # "warming up: 34 s left; latency is tested after"
        elif isinstance(passed_by, str):
            parts.append(f"passed by {passed_by.replace('_', ' ')}")
        elif number(stat.get("remaining")) is not None:
            eta = number(stat.get("eta_s"))
            parts.append(
                f"{count(stat.get('remaining'))} more canary requests for the power"
                + (f" (about {duration(eta)})" if eta is not None else "")
            )
        return "; ".join(parts)

    def statistics_lines(self) -> list[str]:
        """The evidence of harm, then the tests behind the decision's rules (every test
        when no rule names one), for `why`."""
        kinds = [RULE_TEST[r.rule] for r in self.reasons if r.rule in RULE_TEST]
        texts = [harm] if (harm := self.harm()) else []
        texts += [
            text for kind in dict.fromkeys(kinds or TESTS) if (text := self.test_details(kind))
        ]
        return texts

    def reason_sentence(self, reason: ReasonView) -> str:
        if reason.rule in FAILURE_RULES:
            return (
                f"the policy engine could not decide ({reason.rule}), so it failed closed: "
                f"{reason.message}"
            )
        # The policy's own message says it best (and both engines word it alike).
        return reason.message or reason.facts()

    def ordered_reasons(self) -> list[ReasonView]:
        """Harm first, then the evidence still missing, then the rest."""
        return sorted(self.reasons, key=lambda r: _REASON_ORDER.get(r.rule, 2))

    def sentence(self) -> str:
        """Every reason and the outcome, in one line."""
        parts = [self.reason_sentence(reason) for reason in self.ordered_reasons()]
        if not parts:
            parts.append("no reasons given")
        return "; ".join(parts) + f" → {self.outcome}"

    @property
    def outcome(self) -> str:
        """The verdict, and what was done when that differs: `rollback`, `hold at
        max_duration, so held for a person`, `hold, so promote --all by hand`."""
        if self.action == self.verdict:
            return self.verdict
        if self.action == HELD:
            return f"{self.verdict} at max_duration, so held for a person"
        if self.action == "refused":
            return f"{self.verdict}, so {self.requested or 'the command'} was refused"
        if self.action.startswith("forced "):
            return f"{self.verdict}, but {self.action.removeprefix('forced ')} forced by hand"
        if self.by_hand:
            return f"{self.verdict}, so {self.action} by hand"
        gated = self.input.get("action")  # the infrastructure gate's input names the command
        if isinstance(gated, str) and self.action not in ENGINE_ACTIONS:
            allowed = "allowed" if self.verdict == PROMOTE else "denied"
            return f"{self.verdict}, so {gated} {allowed}"
        return f"{self.verdict}, so {self.action}"


def decision_of(record: Record) -> DecisionView | None:
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
    if not isinstance(verdict, str) and is_look(record):
        verdict = HOLD  # a looks record whose full record is missing: only holds are looks
    elif not isinstance(verdict, str):
        verdict = PROMOTE if output.get("allow") is True else ROLLBACK
    action = record.get("action")
    requested = record.get("requested")
    raw_reasons = output.get("reasons")
    index = number(step.get("index"))
    if index is None:
        index = number(record.get("step_index"))
    decision_id = data.get("decision_id")
    return DecisionView(
        record=record,
        at=record_at(record),
        package=str(data.get("package") or "unknown"),
        engine=str(data.get("engine") or "unknown"),
        decision_id=decision_id if isinstance(decision_id, str) else None,
        verdict=verdict,
        reasons=tuple(
            ReasonView.of(r) for r in (raw_reasons if isinstance(raw_reasons, list) else [])
        ),
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
        requested=requested if isinstance(requested, str) else None,
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
    decisions: list[DecisionView] = field(default_factory=list)

    @property
    def name(self) -> str:
        weight = f" ({self.weight:g}% of traffic)" if self.weight is not None else ""
        return f"step {self.index + 1}{weight}"

    @property
    def last(self) -> DecisionView | None:
        return self.decisions[-1] if self.decisions else None


@dataclass
class Rollout:
    rollout_id: str
    records: list[Record]
    start: datetime
    end: datetime
    decisions: list[DecisionView]
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
    def decisive(self) -> DecisionView | None:
        """The rollout engine's decision that ended the rollout (or the latest decision,
        while in progress); None when it ended another way (by hand)."""
        wanted = {"rolled back": ROLLBACK, "promoted": PROMOTE, "failed": ROLLBACK}
        action = wanted.get(self.outcome)
        if action:
            matching = [d for d in self.decisions if d.action == action and not d.by_hand]
            return matching[-1] if matching else None
        return self.decisions[-1] if self.decisions else None

    @property
    def manual_command(self) -> Record | None:
        """The command record of a rollback, abort or promote by hand that came after
        the engine's last decision to that end."""
        verbs = HAND_VERBS.get(self.outcome)
        if verbs is None:
            return None
        decisive = self.decisive
        after = decisive.at if decisive is not None else _EPOCH
        for record in reversed(self.records):
            command = record.get("command")
            if (
                record.get("kind") == "command"
                and isinstance(command, list)
                and any(verb in command[1:] for verb in verbs)
                and record_at(record) >= after
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


def _step_of(record: Record, decision: DecisionView | None) -> tuple[int | None, float | None]:
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


def _steps(records: list[Record], decisions: dict[int, DecisionView]) -> list[Step]:
    """The steps that took traffic: a step is known from a decision at it (a look at
    the canary) or a transition that gave it a weight above 0. A transition at weight
    0 (a canary starting, by hand or before its first step; or on its way out) starts
    no step, so a rollout never shows a 0% step that did not happen; it only tells
    when a step that a later look confirms began."""
    steps: dict[int, Step] = {}
    live_since: dict[int, datetime] = {}  # the first live record at each step index
    for position, record in enumerate(records):
        decision = decisions.get(position)
        index, weight = _step_of(record, decision)
        if index is None:
            continue
        at = record_at(record)
        if decision is not None:
            step = steps.setdefault(index, Step(index, weight, live_since.get(index, at)))
            if weight is not None:  # the weight the policy saw at this look
                step.weight = weight
            step.decisions.append(decision)
            continue
        if record.get("kind") != "transition" or record.get("phase_after") not in LIVE_PHASES:
            continue
        live_since.setdefault(index, at)
        if weight is not None and weight > 0:
            step = steps.setdefault(index, Step(index, weight, at))
            if step.weight is None:
                step.weight = weight
    return [steps[i] for i in sorted(steps)]


def build_rollout(rollout_id: str, records: list[Record]) -> Rollout:
    times = [t for r in records if (t := parse_ts(r.get("ts")))]
    start = min(times, default=_EPOCH)
    decisions: dict[int, DecisionView] = {}
    phase: str | None = None
    ended: datetime | None = None
    versions: dict[str, str] = {}
    for position, record in enumerate(records):
        decision = decision_of(record)
        if decision is not None:
            decisions[position] = decision
        after = record.get("phase_after")
        if record.get("kind") == "transition" and isinstance(after, str):
            phase = after
            ended = record_at(record) if after in ENDED_PHASES else None
        for key in ("stable_version", "canary_version"):
            # The versions the rollout started with; later records may move them.
            if isinstance(record.get(key), str):
                versions.setdefault(key, record[key])
    return Rollout(
        rollout_id=rollout_id,
        records=records,
        start=start,
        # A finished rollout ends with its last transition: records after it under the
        # same id (the CLI notes the next `rollout` command under the last rollout id)
        # are not part of it.
        end=ended or max(times, default=start),
        decisions=list(decisions.values()),
        steps=_steps(records, decisions),
        outcome=OUTCOME_OF_PHASE.get(phase or "", IN_PROGRESS),
        phase=phase,
        stable_version=versions.get("stable_version"),
        canary_version=versions.get("canary_version"),
    )


def rollouts(records: Iterable[Record]) -> list[Rollout]:
    """Every rollout in the records, oldest first (by its first record).

    A rollout is known from its transitions and decisions. The CLI notes each command
    under the rollout id the state had before it, so a `canary` or `rollout` command
    carries the previous rollout's id; when that rollout is not in the records (an
    older file, `--rollout`), those commands alone make no rollout."""
    grouped: dict[str, list[Record]] = {}
    for record in expand(records):
        rollout_id = record.get("rollout_id")
        if isinstance(rollout_id, str) and rollout_id:
            grouped.setdefault(rollout_id, []).append(record)
    built = [
        build_rollout(rollout_id, group)
        for rollout_id, group in grouped.items()
        if any(r.get("kind") in ("transition", "decision") for r in group)
    ]
    return sorted(built, key=lambda r: r.start)


def violations(records: Iterable[Record]) -> list[tuple[DecisionView, ReasonView]]:
    """Every reason of a decision that denied (a rollback verdict, whether the engine
    rolled back or a gate refused or was overridden) or could not be made at all."""
    found: list[tuple[DecisionView, ReasonView]] = []
    for record in expand(records):
        decision = decision_of(record)
        if decision is not None and (decision.verdict == ROLLBACK or decision.failed):
            found.extend((decision, reason) for reason in decision.reasons)
    return found


# --- runs of the same hold ------------------------------------------------------------


def _hold_key(record: Record) -> tuple[object, ...] | None:
    """What makes looks the same hold: one process's engine holding at one step for
    the same rules. None for any other record."""
    decision = decision_of(record)
    if decision is None or decision.by_hand or (decision.action, decision.verdict) != (HOLD, HOLD):
        return None
    who = as_mapping(record.get("actor"))
    rules = tuple(reason.rule for reason in decision.reasons)
    return (decision.rollout_id, who.get("host"), who.get("pid"), decision.package,
            decision.step_index, rules)  # fmt: skip


def runs(records: Iterable[Record]) -> list[list[Record]]:
    """The records in order, with each run of the same hold (consecutive records, nothing
    between them) as one group; every other record is a group of its own."""
    groups: list[list[Record]] = []
    last_key: tuple[object, ...] | None = None
    for record in records:
        key = _hold_key(record)
        if key is not None and key == last_key:
            groups[-1].append(record)
        else:
            groups.append([record])
        last_key = key
    return groups


def _clock(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%H:%M:%S")


def run_sentence(decisions: list[DecisionView]) -> str:
    """A look's sentence; for a run, `hold x 83, 10:01:02-10:03:48: ` and the last one's."""
    last = decisions[-1]
    if len(decisions) == 1:
        return last.sentence()
    span = f"{_clock(decisions[0].at)}-{_clock(last.at)}"
    return f"{last.verdict} x {len(decisions)}, {span}: {last.sentence()}"


def decision_runs(rollout: Rollout) -> list[list[DecisionView]]:
    """The rollout's decisions, each run of the same hold as one group."""
    views = {id(d.record): d for d in rollout.decisions}
    grouped = [[views[id(r)] for r in group if id(r) in views] for group in runs(rollout.records)]
    return [group for group in grouped if group]


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
    # `chaos` records 0 for the effect it was not asked for; that is no chaos.
    if number(record.get("error_rate")):
        parts.append(f"error rate {pct(record.get('error_rate'))}")
    if number(record.get("latency_ms")):
        parts.append(f"+{ms(record.get('latency_ms'))} latency")
    if number(record.get("duration_s")):
        parts.append(f"for {duration(record.get('duration_s'))}")
    return ", ".join(parts)


_QUIET = {
    "id", "seq", "ts", "actor", "command", "rollout_id", "kind", "prev_hash", "hash", "mac",
}  # fmt: skip


def summary(record: Record) -> str:
    kind = record.get("kind")
    if kind == "command":
        return f"$ {_argv(record)}"
    if kind == "transition":
        text = f"{record.get('phase_before')} → {record.get('phase_after')}"
        index, weight = _step_of(record, None)
        if index is not None:
            text += f", step {index + 1}"
        if weight is not None:
            # The weight at this moment, which is not always a step's (0 while starting).
            text += f", canary weight {weight:g}%"
        reason = record.get("reason")
        return f"{text}: {reason}" if isinstance(reason, str) and reason else text
    decision = decision_of(record)
    if decision is not None:
        return run_summary([decision])
    if kind == "chaos":
        return chaos_summary(record)
    extra = {k: v for k, v in record.items() if k not in _QUIET}
    return ", ".join(f"{k}={v}" for k, v in extra.items())[:300]


def run_summary(decisions: list[DecisionView]) -> str:
    """The timeline's line for a decision, or a run of the same hold."""
    last = decisions[-1]
    return f"{last.package} {last.step_name}: {run_sentence(decisions)}"


def actor(record: Record) -> str:
    who = as_mapping(record.get("actor"))
    return f"{who.get('user', '?')}@{who.get('host', '?')} pid {who.get('pid', '?')}"
