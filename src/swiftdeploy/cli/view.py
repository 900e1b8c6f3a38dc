"""Following a rollout from its saved states: on a terminal a compact live view (where
it stands, in plain words); otherwise one line per change and a heartbeat, like
`kubectl rollout status`; (`--json`) one JSON object per look and a summary for CI.
Text from the canary (its metrics' details, the policy's reasons that quote them) is
never read as markup."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from rich.console import Console
from rich.live import Live
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from swiftdeploy.cli.common import printable
from swiftdeploy.durations import format_duration
from swiftdeploy.manifest import Manifest, Step
from swiftdeploy.rollout.engine import TickReport
from swiftdeploy.rollout.plan import later_steps_s
from swiftdeploy.rollout.statistics import (
    Settings,
    Statistics,
    StepProgress,
    assess,
    describe_progress,
    progress,
    statistics_rows,
    step_progress,
)
from swiftdeploy.state import Phase, State
from swiftdeploy.state.evidence import Counts
from swiftdeploy.state.model import HookAnswer, HookWait
from swiftdeploy.stats.quantile import histogram_quantile


def look_json(report: TickReport) -> dict[str, Any]:
    """One look for CI: step, weight, both tracks' numbers, the statistics, the decision."""
    state = report.state
    return {
        "look": "decision",
        "rollout_id": state.rollout_id,
        "step": (state.step_index or 0) + 1,
        "weight": state.canary_weight,
        "elapsed_s": round(report.elapsed_s, 3),
        "canary": report.canary.model_dump(mode="json") if report.canary else None,
        "stable": report.stable.model_dump(mode="json") if report.stable else None,
        "statistics": report.statistics or {},
        "decision": report.decision.model_dump(mode="json") if report.decision else None,
        "action": report.action,
    }


def json_line(state: State, message: str, exit_code: int) -> dict[str, Any]:
    """The summary after the last look, with the exit code the command returns."""
    return {
        "look": "summary",
        "rollout_id": state.rollout_id,
        "phase": state.phase.value,
        "stable_version": state.stable_version,
        "canary_version": state.canary_version,
        "canary_weight": state.canary_weight,
        "message": message,
        "exit_code": exit_code,
    }


# --- following a rollout from its saved states ------------------------------------------

Mode = Literal["live", "lines", "quiet", "verbose"]
# A step whose canary has had no request this long is said to have none (a warning).
NO_TRAFFIC_S = 30.0
# A rollout first seen this soon after its first step began is said to start, not to be
# joined under way.
JUST_STARTED_S = 10.0
ENDED = frozenset({Phase.PROMOTED, Phase.ROLLED_BACK, Phase.FAILED, Phase.IDLE})


@dataclass(frozen=True)
class Change:
    """One change between two saved states, as a line for people."""

    event: str  # started, step, passed, held, paused, resumed, promoting, promoted, ...
    text: str
    warning: bool = False  # said even with --quiet


def changes(
    before: State | None, after: State, manifest: Manifest, now: float | None = None
) -> list[Change]:
    """What changed from one saved state to the next (some may have been skipped in
    between: the client polls), found from phase, step, weight, pause and message.
    `now` tells a rollout just started from one attached to later."""
    if before is None or before.rollout_id != after.rollout_id:
        return _first_sight(after, manifest, now)
    if (before.phase, before.pause_kind) != (after.phase, after.pause_kind):
        return _phase_change(before, after, manifest)
    if after.step_started_at != before.step_started_at and after.step_started_at is not None:
        return [_entered(before, after, manifest)]
    steered = after.phase in (Phase.PROGRESSING, Phase.PAUSED)
    if steered and after.canary_weight != before.canary_weight:
        return [Change("weight", f"canary weight {after.canary_weight}%{_at(after, manifest)}")]
    if after.message and after.message != before.message:
        return [Change("message", printable(after.message), after.pause_kind == "held")]
    return []


def _first_sight(after: State, manifest: Manifest, now: float | None) -> list[Change]:
    if after.phase in ENDED or after.canary_version is None:
        return []  # nothing to follow: the caller says how it ended
    stable = f" (stable {after.stable_version})" if after.stable_version else ""
    started = after.evidence.steps[0].started_at if after.evidence.steps else None
    if now is not None and started is not None and now - started >= JUST_STARTED_S:
        ago = format_duration(now - started)
        first = Change("following", f"rollout of {after.canary_version}{stable}, started {ago} ago")
    else:
        first = Change("started", f"rollout of {after.canary_version} started{stable}")
    if after.step_started_at is None and after.phase == Phase.PROGRESSING:
        return [first]  # its canary is starting
    return [first, *_phase_change(State(), after, manifest)]


def _phase_change(before: State, after: State, manifest: Manifest) -> list[Change]:
    phase, message = after.phase, printable(after.message or "")
    if phase == Phase.PROGRESSING:
        if after.step_started_at != before.step_started_at and after.step_started_at is not None:
            return [_entered(before, after, manifest)]
        return [Change("resumed", f"resumed at {_where(after, manifest)}")]
    if phase == Phase.PAUSED:
        return [_paused(before, after, manifest)]
    if phase == Phase.PROMOTING:
        going = f"promoting {after.canary_version}: all traffic to the canary"
        if before.phase == Phase.PROGRESSING:
            return [Change("promoting", f"{_passed(before, after, manifest)}; {going}")]
        return [Change("promoting", going)]
    if phase == Phase.PROMOTED:
        took = _took(after)
        return [Change("promoted", f"promoted: {after.stable_version} is stable{took}")]
    if phase == Phase.ROLLING_BACK:
        return [Change("rolling-back", f"rolling back {after.canary_version}: {message}")]
    if phase == Phase.ROLLED_BACK:
        if before.phase == Phase.ROLLING_BACK and before.message == after.message:
            message = "the canary takes no traffic and is stopped"  # the reason was said
        return [Change("rolled-back", f"rolled back: {message}")]
    if phase == Phase.FAILED:
        return [Change("failed", f"failed: {message}", warning=True)]
    return []


def _paused(before: State, after: State, manifest: Manifest) -> Change:
    where, message = _where(after, manifest), printable(after.message or "")
    if after.pause_kind == "held":
        return Change("held", f"held at {where}: {message}", warning=True)
    if after.pause_kind == "operator":
        return Change("paused", f"paused by a person at {where}" + _colon(message))
    passed = _passed(before, after, manifest)
    steps = manifest.strategy.canary.steps
    index = after.step_index
    pause = steps[index].pause if index is not None and index < len(steps) else None
    if after.pause_kind == "timed" and isinstance(pause, float):
        return Change("passed", f"{passed}; pausing {format_duration(pause)}")
    return Change("passed", f"{passed}; waiting for `swiftdeploy promote`")


def _entered(before: State, after: State, manifest: Manifest) -> Change:
    """A step entered: the one before it passed, unless a pause already said so."""
    entered = f"{_step(after, manifest)}: canary at {after.canary_weight}%"
    moved_on = before.step_index is not None and (after.step_index or 0) > before.step_index
    unsaid = before.phase == Phase.PROGRESSING or before.pause_kind in ("held", "operator")
    if moved_on and unsaid:
        return Change("step", f"{_passed(before, after, manifest)}; {entered}")
    return Change("step", entered)


def _passed(before: State, after: State, manifest: Manifest) -> str:
    """`step i of n passed after T`, or `promoted by hand`, from the ledger of the step."""
    index = before.step_index if before.step_index is not None else after.step_index or 0
    ledger = next((s for s in after.evidence.steps if s.index == index), None)
    by_hand = ledger is not None and "hand" in ledger.passed.values()
    text = f"step {index + 1} of {_steps(manifest)} " + (
        "promoted by hand" if by_hand else "passed"
    )
    moved = after.step_index != index and after.step_started_at is not None
    ended = after.step_started_at if moved else after.updated_at  # the store stamps it
    wait = before.awaiting
    if wait is not None and wait.type != "pre-rollout" and wait.step == index:
        # it passed when the wait began; what came after was the hook's approval
        if ledger is not None:
            text += f" after {format_duration(max(wait.since - ledger.started_at, 0.0))}"
        waited = f" after {format_duration(max(ended - wait.since, 0.0))}" if ended else ""
        return f"{text}; approved by {_hooks(wait)}{waited}"
    if ledger is not None and ended:
        text += f" after {format_duration(max(ended - ledger.started_at, 0.0))}"
    return text


def _hooks(wait: HookWait) -> str:
    return f"{'hook' if len(wait.hooks) == 1 else 'hooks'} {', '.join(wait.hooks)}"


def waiting_words(state: State, manifest: Manifest, now: float) -> str:
    """A step held for a gating hook, in words: 'step 2 of 2 passed after 36 s; waiting
    for hook approve (confirm-promotion): HTTP 403 for 3 min 10 s'."""
    wait = state.awaiting
    assert wait is not None
    heard = "; ".join(
        _heard(state.hooks.get(name), wait.step, name if len(wait.hooks) > 1 else "")
        for name in wait.hooks
    )
    waiting = f"waiting for {_hooks(wait)} ({wait.type})"
    waited = format_duration(max(now - wait.since, 0.0))
    if wait.type == "pre-rollout":
        return f"{waiting} before the canary gets any traffic: {heard} for {waited}"
    ledger = next((s for s in state.evidence.steps if s.index == wait.step), None)
    took = f" after {format_duration(max(wait.since - ledger.started_at, 0.0))}" if ledger else ""
    passed = f"step {wait.step + 1} of {_steps(manifest)} passed{took}"
    return f"{passed}; {waiting}: {heard} for {waited}"


def _heard(answer: HookAnswer | None, step: int, name: str) -> str:
    said = f"{name} " if name else ""
    if answer is None or answer.step != step:
        return f"{said}asked, no answer yet"
    if answer.status is None:
        return f"{said}no answer ({answer.error})"
    return f"{said}HTTP {answer.status}"


def _took(state: State) -> str:
    first = state.evidence.steps[0].started_at if state.evidence.steps else None
    if first is None or not state.updated_at:
        return ""
    return f" (the rollout took {format_duration(max(state.updated_at - first, 0.0))})"


def _steps(manifest: Manifest) -> int:
    return len(manifest.strategy.canary.steps)


def _step(state: State, manifest: Manifest) -> str:
    return f"step {(state.step_index or 0) + 1} of {_steps(manifest)}"


def _where(state: State, manifest: Manifest) -> str:
    return f"{_step(state, manifest)} ({state.canary_weight}%)"


def _at(state: State, manifest: Manifest) -> str:
    return f" at {_step(state, manifest)}" if state.step_index is not None else ""


def _colon(text: str) -> str:
    return f": {text}" if text else ""


def _numbers(counts: Counts) -> str:
    """A track's numbers in this step: requests, 5xx count and share, p99."""
    if counts.requests == 0:
        return "no requests yet"
    pairs = [(float(le), float(count)) for le, count in counts.buckets.items()]
    p99 = histogram_quantile(0.99, pairs) if pairs else math.nan
    latency = f"{p99 * 1000:.0f} ms" if math.isfinite(p99) else "-"
    share = counts.errors / counts.requests
    return f"{counts.requests:,} req, 5xx {counts.errors} ({share:.2%}), p99 {latency}"


class RolloutFollower:
    """Follows a rollout from the states its driver saves (`update`), between them
    (`tick`) keeping the time shown current. Modes: `live`, a compact view on a
    terminal (`verbose` there adds the statistics); `lines`, one line per change and a
    heartbeat when nothing changed for `heartbeat_s` (`verbose` off a terminal adds a
    line per look); `quiet`, warnings only. The caller prints how it ended."""

    def __init__(
        self,
        console: Console,
        manifest: Manifest,
        *,
        mode: Mode,
        heartbeat_s: float = 30.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.console = console
        self.manifest = manifest
        self.mode = mode
        self.heartbeat_s = heartbeat_s
        self.clock = clock
        self.settings = Settings.of(manifest.policy)
        live = mode in ("live", "verbose") and console.is_terminal
        # transient: the lines said stay above it, and the caller prints how it ended
        self.live = Live(console=console, auto_refresh=False, transient=True) if live else None
        self.state: State | None = None
        self.statistics: Statistics | None = None
        self.standing: StepProgress | None = None
        self._assessed: tuple[object, ...] | None = None
        self._said_at = clock()
        self._warned: set[tuple[str | None, float | None, str]] = set()
        self._short_since: tuple[float, float] | None = None  # (step start, since when)

    def __enter__(self) -> RolloutFollower:
        if self.live is not None:
            self.live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.live is None:
            return
        self.live.__exit__(None, None, None)
        if self.state is not None and self.state.phase not in ENDED:
            self._say(self.heartbeat())  # where it was left (detached), once the view is gone

    # --- what the caller calls --------------------------------------------------------

    def update(self, state: State) -> None:
        """A newly saved state: say what changed, and (verbose) the look it made."""
        before, self.state = self.state, state
        self._assess(state)
        for change in changes(before, state, self.manifest, self.clock()):
            if change.warning:
                self._say(f"warning: {change.text}")
            elif self.mode != "quiet":
                self._say(change.text)
        look = state.last_look
        new_look = look is not None and (before is None or before.last_look != look)
        if self.mode == "verbose" and self.live is None and new_look:
            self._say(self._look_line(state))
        self._warn_about_traffic()
        self.refresh()

    def tick(self) -> None:
        """Between states (about every 0.5 s): the live view's times move on; off a
        terminal, a heartbeat when nothing was said for heartbeat_s."""
        self._warn_about_traffic()
        state = self.state
        lines = self.mode in ("lines", "verbose") and self.live is None
        due = self.clock() - self._said_at >= self.heartbeat_s
        if lines and due and state is not None and state.phase not in ENDED:
            self._say(self.heartbeat())
        self.refresh()

    def refresh(self) -> None:
        if self.live is not None and self.state is not None:
            self.live.update(self.render(), refresh=True)

    # --- where it stands ------------------------------------------------------------------

    def heartbeat(self) -> str:
        """Where the rollout stands, in one line of plain words."""
        state = self.state
        assert state is not None
        where, now = _where(state, self.manifest), self.clock()
        since = f" for {format_duration(now - state.updated_at)}" if state.updated_at else ""
        if state.phase == Phase.PAUSED and state.pause_kind == "timed" and state.resume_at:
            return f"pausing after {where}: goes on in {format_duration(state.resume_at - now)}"
        if state.phase == Phase.PAUSED and state.pause_kind == "manual":
            return f"waiting for `swiftdeploy promote` at {where}{since}"
        if state.phase == Phase.PAUSED and state.pause_kind == "operator":
            return f"paused by a person at {where}{since}"
        if state.phase in (Phase.PROMOTING, Phase.ROLLING_BACK):
            return f"still {state.phase.value.replace('-', ' ')} {state.canary_version}"
        if state.awaiting is not None:  # the evidence said its word; a hook has not
            return waiting_words(state, self.manifest, now)
        held = state.phase == Phase.PAUSED and state.pause_kind == "held"
        text = f"{'held at ' if held else ''}{where}, {self._times()}: {self._progress()}"
        step = state.evidence.current
        if step is not None and step.canary.requests:
            text += f"; canary {_numbers(step.canary)}"
        eta = self.eta()
        return text + (f"; done in about {format_duration(eta)}" if eta is not None else "")

    def eta(self) -> float | None:
        """About how long until the rollout promotes, if it goes well; None when that
        cannot be told (the step cannot be planned yet, or a person must act)."""
        state = self.state
        steps = self.manifest.strategy.canary.steps
        if state is None or state.step_index is None or state.step_index >= len(steps):
            return None
        if state.awaiting is not None:
            return None  # until a hook answers 2xx
        later, manual = later_steps_s(self.manifest, state.step_index)
        this = self._this_step_left(state, steps[state.step_index])
        return None if manual or this is None else this + later

    def _this_step_left(self, state: State, step: Step) -> float | None:
        """The current step's time left, its pause included; None for a person to act."""
        now = self.clock()
        if state.phase == Phase.PAUSED and state.pause_kind == "timed":
            return max((state.resume_at or now) - now, 0.0)
        held = state.phase == Phase.PAUSED and state.pause_kind == "held"
        running = state.phase == Phase.PROGRESSING or held
        left = self._step_left() if running else None
        if left is None or step.pause == "manual":
            return None
        return left + (step.pause if isinstance(step.pause, float) else 0.0)

    def _step_left(self) -> float | None:
        """About how long the current step still runs: its evidence at the canary rate,
        and at least its min_duration."""
        state, standing = self.state, self.standing
        if state is None or standing is None or standing.eta_s is None:
            return None
        now = self.clock()
        mark = state.evidence.marks.get("canary")
        evidence_left = max(standing.eta_s - (now - mark if mark is not None else 0.0), 0.0)
        analysis = self.manifest.strategy.canary.analysis_for(
            self.manifest.strategy.canary.steps[state.step_index or 0]
        )
        started = state.step_started_at if state.step_started_at is not None else now
        return max(evidence_left, started + analysis.min_duration - now)

    def _step_words(self, state: State) -> str:
        """`step 1 of 3`, with the phase when it is not simply running."""
        words = _step(state, self.manifest)
        if state.phase == Phase.PAUSED:
            return f"{words}, {state.pause_kind or 'paused'}"
        if state.phase != Phase.PROGRESSING:
            return f"{words}, {state.phase.value}"
        return words

    def _progress(self) -> str:
        state = self.state
        if state is None or self.standing is None:
            return "starting the canary"
        text = describe_progress(self.standing)
        left = self._step_left()
        deadline = state.step_deadline
        if state.phase == Phase.PROGRESSING and deadline is not None and self.standing.waiting:
            holds_in = deadline - self.clock()
            if holds_in > 0 and (left is None or left > holds_in):
                text += f"; holds at max_duration in {format_duration(holds_in)}"
        return text

    def _times(self) -> str:
        state = self.state
        assert state is not None
        now = self.clock()
        parts = []
        if state.step_started_at is not None:
            parts.append(f"{format_duration(now - state.step_started_at)} in the step")
        if state.evidence.steps:
            rollout = now - state.evidence.steps[0].started_at
            parts.append(f"{format_duration(rollout)} in the rollout")
        return ", ".join(parts) or "just started"

    def render(self) -> Table:
        """The live view: step, times, ETA, each track's numbers, progress in words (and
        with verbose, the statistics behind them)."""
        state = self.state
        assert state is not None
        title = f"{self.manifest.service.name}: rollout of {state.canary_version or '-'}"
        table = Table(title=escape(title), show_header=False, title_justify="left")
        if state.phase in ENDED:
            table.add_row(Text(state.phase.value), Text(printable(state.message or "")))
            return table
        rows: list[tuple[str, str]] = [
            ("step", f"{self._step_words(state)}, canary at {state.canary_weight}%"),
            ("time", self._times()),
        ]
        eta = self.eta()
        rows.append(("ETA", f"about {format_duration(eta)}" if eta is not None else "-"))
        step = state.evidence.current
        if step is not None:
            rows += [("canary", _numbers(step.canary)), ("stable", _numbers(step.stable))]
        if state.awaiting is not None:
            rows.append(("waiting", waiting_words(state, self.manifest, self.clock())))
        else:
            rows.append(("progress", self._progress()))
        if self.statistics:
            rows += progress(self.statistics, state.evidence)[1:]
            if self.mode == "verbose":
                behind = [f"{label}: {text}" for label, text in statistics_rows(self.statistics)]
                rows += [("statistics" if i == 0 else "", text) for i, text in enumerate(behind)]
        look = state.last_look
        if look is not None:
            ago = format_duration(max(self.clock() - look.at, 0.0))
            said = f"{ago} ago: {look.action}"
            if self.mode == "verbose":  # the policy's reasons speak its statistics
                said += _colon("; ".join(look.reasons))
            rows.append(("last look", said))
        if state.message and state.awaiting is None:  # a wait's message is said above
            rows.append(("note", state.message))
        for label, value in rows:
            table.add_row(Text(label), Text(printable(value)))
        return table

    # --- helpers ----------------------------------------------------------------------

    def _assess(self, state: State) -> None:
        """The step's statistics, recomputed only when its ledger has changed."""
        step = state.evidence.current
        if step is None or state.phase in ENDED:
            self.statistics, self.standing, self._assessed = None, None, None
            return
        key = (state.rollout_id, len(state.evidence.steps), step, state.evidence.warmup)
        if key == self._assessed:
            return
        self._assessed = key
        self.statistics = assess(state.evidence, self.settings)
        self.standing = step_progress(self.statistics, state.evidence)

    def _look_line(self, state: State) -> str:
        look = state.last_look
        assert look is not None
        started = state.step_started_at if state.step_started_at is not None else look.at
        words = [f"look: {look.action} at {_where(state, self.manifest)}"
                 f" {format_duration(max(look.at - started, 0.0))} in"]  # fmt: skip
        step = state.evidence.current
        if step is not None:
            words += [f"canary {_numbers(step.canary)}", f"stable {_numbers(step.stable)}"]
        if self.standing is not None:
            words.append(describe_progress(self.standing))
        words += [f"{label}: {text}" for label, text in statistics_rows(self.statistics)]
        words += list(look.reasons)
        return "; ".join(words)

    def _warn_about_traffic(self) -> None:
        """Once a step: no canary traffic, or too little to decide before max_duration."""
        state = self.state
        if state is None or state.phase != Phase.PROGRESSING or state.step_started_at is None:
            return
        now = self.clock()
        in_step = now - state.step_started_at
        if in_step < NO_TRAFFIC_S or state.step_deadline is None:
            return
        holds = f"it holds at max_duration in {format_duration(max(state.step_deadline - now, 0))}"
        where = _where(state, self.manifest)
        step, standing, left = state.evidence.current, self.standing, self._step_left()
        if step is not None and step.canary.requests == 0:
            self._warn_once(
                state,
                "none",
                f"no canary traffic in the {format_duration(in_step)} since {where} began:"
                f" the step cannot pass without it; {holds}",
            )
            return
        short = (
            standing is not None
            and standing.waiting
            and standing.canary_rps
            and left is not None
            and now + left > state.step_deadline
        )
        if not short or standing is None:
            self._short_since = None
            return
        # said once it has lasted: a new estimate of the spread can raise what a step
        # needs for a few looks before the no-harm test passes it
        if self._short_since is None or self._short_since[0] != state.step_started_at:
            self._short_since = (state.step_started_at, now)
        if now - self._short_since[1] >= NO_TRAFFIC_S:
            self._warn_once(
                state,
                "little",
                f"at {standing.canary_rps:.2g} canary req/s, {where} will not be decided in"
                f" time ({describe_progress(standing)}); {holds}",
            )

    def _warn_once(self, state: State, what: str, text: str) -> None:
        key = (state.rollout_id, state.step_started_at, what)
        if key not in self._warned:
            self._warned.add(key)
            self._say(f"warning: {text}")

    def _say(self, line: str) -> None:
        self._said_at = self.clock()
        self.console.print(line, markup=False, highlight=False, soft_wrap=True)
