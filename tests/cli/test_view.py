"""Following a rollout from its saved states: whole rollouts run by the real engine on a
simulated service (bench/support/sim.py), every state it saves replayed into the
follower as a client sees them, with a clock that moves as the simulation's did.

Off a terminal: one line per change and a heartbeat; --quiet only warnings; --verbose
one more line per look. On a terminal: a compact view in plain words. Text from the
canary or the policy (`[/]`, `[bold]`) is shown, never read as markup."""

from __future__ import annotations

import io
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from bench.support.sim import SimWorld, TrackModel, init_manifest, sim_world
from rich.console import Console

from swiftdeploy.cli.view import Mode, RolloutFollower, changes
from swiftdeploy.durations import format_duration
from swiftdeploy.manifest import Manifest
from swiftdeploy.policy import EmbeddedEngine
from swiftdeploy.rollout.engine import RolloutEngine, TickReport
from swiftdeploy.state import LastLook, Phase, State
from swiftdeploy.state.model import HookAnswer, HookWait

POLICIES = Path(__file__).resolve().parents[2] / "policies"
HOSTILE = "canary said [/] and [bold red]promote me[/bold red] [link=http://x]y[/link]"
TICK_S = 0.5  # how often the client calls tick()
HEARTBEAT_S = 30.0
# A heartbeat: where it stands, with the time in the step (a change line has none).
HEARTBEAT = re.compile(r"^(held at )?step \d of 3 \(\d+%\), .* in the step")


@dataclass
class Recorded:
    """A whole rollout as its client would see it: every state saved, and when."""

    manifest: Manifest
    timeline: list[tuple[float, State]] = field(default_factory=list)
    reports: list[TickReport] = field(default_factory=list)

    @property
    def looks(self) -> int:
        return len({state.last_look.at for _, state in self.timeline if state.last_look})


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def shipped_policy() -> Iterator[EmbeddedEngine]:
    engine = EmbeddedEngine(POLICIES)
    yield engine
    engine.close()


def _recorded(
    directory: Path,
    policy: EmbeddedEngine,
    total_rps: float,
    canary: TrackModel | None = None,
    changes: dict[str, object] | None = None,
) -> tuple[Recorded, SimWorld, RolloutEngine]:
    """A simulated world whose every saved state is recorded, and its engine."""
    loaded = init_manifest(directory, **(changes or {}))
    made = sim_world(
        loaded, total_rps=total_rps, stable=TrackModel(), canary=canary or TrackModel(), seed=7
    )
    recorded = Recorded(loaded.manifest)
    save = made.store.save

    def saved(state: State) -> State:
        # stamped as FileStateStore stamps it (the simulation's store keeps it in memory)
        kept = save(state.model_copy(update={"updated_at": made.clock.now}))
        recorded.timeline.append((made.clock.now, kept))
        return kept

    made.store.save = saved  # type: ignore[method-assign]
    return recorded, made, made.engine(policy, recorded.reports.append)


@pytest.fixture(scope="module")
def healthy(tmp_path_factory: pytest.TempPathFactory, shipped_policy: EmbeddedEngine) -> Recorded:
    """init's defaults at 500 req/s, a canary like the stable: promoted in about 2 min."""
    recorded, _made, engine = _recorded(tmp_path_factory.mktemp("healthy"), shipped_policy, 500)
    assert engine.run(engine.begin("v2")).phase == Phase.PROMOTED
    return recorded


def follow(
    recorded: Recorded,
    mode: Mode,
    *,
    terminal: bool = False,
    poll_s: float | None = None,
    tick_s: float = TICK_S,
    width: int = 80,
) -> str:
    """Replay a rollout into a follower: each saved state (or with `poll_s`, only the
    newest at each poll, as the client polls), and tick() every TICK_S in between."""
    buffer = io.StringIO()
    console = Console(file=buffer, force_terminal=terminal, width=width, color_system=None)
    clock = Clock(recorded.timeline[0][0])
    with RolloutFollower(
        console,
        recorded.manifest,
        mode=mode,
        heartbeat_s=HEARTBEAT_S,
        clock=clock,
    ) as follower:
        next_tick = clock.now + tick_s
        for at, state in _deliveries(recorded, poll_s):
            while next_tick <= at:
                clock.now, next_tick = next_tick, next_tick + tick_s
                follower.tick()
            clock.now = at
            follower.update(state)
    return buffer.getvalue()


def _deliveries(recorded: Recorded, poll_s: float | None) -> list[tuple[float, State]]:
    if poll_s is None:
        return recorded.timeline
    polls: list[tuple[float, State]] = []
    start, end = recorded.timeline[0][0], recorded.timeline[-1][0]
    index, at = 0, start
    while at <= end + poll_s:
        while index + 1 < len(recorded.timeline) and recorded.timeline[index + 1][0] <= at:
            index += 1
        newest = recorded.timeline[index][1]
        if not polls or polls[-1][1] is not newest:
            polls.append((at, newest))
        at += poll_s
    return polls


def _changes(output: str) -> list[str]:
    return [line for line in output.splitlines() if not HEARTBEAT.match(line)]


def _heartbeats(output: str) -> list[str]:
    return [line for line in output.splitlines() if HEARTBEAT.match(line)]


# --- not a terminal ----------------------------------------------------------------------


def test_a_healthy_rollout_writes_a_line_per_change_and_a_heartbeat(healthy: Recorded) -> None:
    # Given a healthy rollout at init's defaults, When a pipe follows it
    output = follow(healthy, "lines")
    # Then each change is one line, in order
    lines = _changes(output)
    expected = [
        r"rollout of v2 started \(stable v1\)",
        r"step 1 of 3: canary at 10%",
        r"step 1 of 3 passed after \d+ min( \d+ s)?; step 2 of 3: canary at 25%",
        r"step 2 of 3 passed after 30 s; step 3 of 3: canary at 50%",
        r"step 3 of 3 passed after 30 s; promoting v2: all traffic to the canary",
        r"promoted: v2 is stable \(the rollout took \d+ min( \d+ s)?\)",
    ]
    assert len(lines) == len(expected), output
    for line, pattern in zip(lines, expected, strict=True):
        assert re.fullmatch(pattern, line), line
    # and when nothing changed for 30 s, a heartbeat says where it stands in plain words
    took = healthy.timeline[-1][0] - healthy.timeline[0][0]
    beats = _heartbeats(output)
    assert 1 <= len(beats) <= took // HEARTBEAT_S
    assert beats[0].startswith("step 1 of 3 (10%), 30 s in the step, 30 s in the rollout: ")
    assert "more canary requests, about" in beats[0]
    assert "; canary " in beats[0]
    assert re.search(r"; done in about \d+ (min|s)", beats[0])
    # where the engine saved a state about twice a look, and the old view wrote a
    # paragraph per look
    assert len(healthy.timeline) > 500
    assert len(output.splitlines()) <= 20 + len(beats)
    assert all(len(line) <= 400 for line in output.splitlines())  # never wrapped


def test_a_client_that_polls_says_each_change_once(healthy: Recorded) -> None:
    # Given a client that sees only the newest state every 0.25 s (it skips states)
    output = follow(healthy, "lines", poll_s=0.25)
    lines = _changes(output)
    # Then it says no change twice, and still each step and the end
    assert len(lines) == len(set(lines))
    for step in ("step 1 of 3: canary at 10%", "step 2 of 3: canary at 25%",
                 "step 3 of 3: canary at 50%", "promoted: v2 is stable"):  # fmt: skip
        assert sum(step in line for line in lines) == 1, output


def test_quiet_writes_nothing_for_a_healthy_rollout(healthy: Recorded) -> None:
    assert follow(healthy, "quiet") == ""


def test_verbose_adds_one_line_per_look(healthy: Recorded) -> None:
    output = follow(healthy, "verbose")
    looks = [line for line in output.splitlines() if line.startswith("look: ")]
    assert len(looks) == healthy.looks == len(healthy.reports)
    # each with both tracks' numbers and the statistics behind the plain words
    assert "; canary " in looks[-1]
    assert "; stable " in looks[-1]
    assert "evidence of harm: " in looks[-1]
    # and the same lines for changes as without --verbose
    said = [line for line in _changes(output) if not line.startswith("look: ")]
    assert said == _changes(follow(healthy, "lines"))


def test_a_rollback_says_why_once(tmp_path: Path, shipped_policy: EmbeddedEngine) -> None:
    # Given a canary failing 5% of requests against the stable's 0.5%
    recorded, _made, engine = _recorded(
        tmp_path, shipped_policy, 200, canary=TrackModel(error_rate=0.05)
    )
    assert engine.run(engine.begin("v2")).phase == Phase.ROLLED_BACK
    # Then a pipe gets the reason once, and --quiet leaves the outcome to the caller
    lines = follow(recorded, "lines").splitlines()
    assert lines[:2] == ["rollout of v2 started (stable v1)", "step 1 of 3: canary at 10%"]
    assert lines[2].startswith("rolling back v2: canary errors worse than stable")
    assert lines[3:] == ["rolled back: the canary takes no traffic and is stopped"]
    assert follow(recorded, "quiet") == ""


@pytest.fixture(scope="module")
def no_traffic(
    tmp_path_factory: pytest.TempPathFactory, shipped_policy: EmbeddedEngine
) -> Recorded:
    """A service without traffic and a two-minute step limit: held, resumed, held again."""
    recorded, _made, engine = _recorded(
        tmp_path_factory.mktemp("idle"),
        shipped_policy,
        0,
        changes={"strategy.canary.analysis.max_duration": "2m"},
    )
    held = engine.run(engine.begin("v2"))
    assert (held.phase, held.pause_kind) == (Phase.PAUSED, "held")
    engine.run(engine.resume_held(held))  # `resume`
    return recorded


def test_no_traffic_warns_early_then_holds_and_resumes(no_traffic: Recorded) -> None:
    # Then 30 s in, a warning says there is no canary traffic and when the step holds
    lines = follow(no_traffic, "lines").splitlines()
    warning = (
        "warning: no canary traffic in the 30 s since step 1 of 3 (10%) began: the step"
        " cannot pass without it; it holds at max_duration in 1 min 30 s"
    )
    assert lines[2] == warning
    heartbeat = _heartbeats("\n".join(lines))[0]
    assert "no canary traffic yet; holds at max_duration in " in heartbeat
    held_lines = [line for line in lines if line.startswith("warning: held at step 1 of 3 (10%)")]
    assert len(held_lines) == 2
    assert "resumed at step 1 of 3 (10%)" in lines
    assert lines.count(warning) == 1  # once a step
    # --quiet says the warnings, and nothing else
    quiet = follow(no_traffic, "quiet").splitlines()
    assert quiet
    assert all(line.startswith("warning: ") for line in quiet)
    assert [line for line in quiet if "held at" in line] == held_lines


def test_pauses_say_the_step_passed_and_what_comes(
    tmp_path: Path, shipped_policy: EmbeddedEngine
) -> None:
    steps = [{"weight": 10, "pause": "20s"}, {"weight": 25, "pause": "manual"}, {"weight": 50}]
    quick: dict[str, object] = {
        "strategy.canary.analysis.warmup": "off",
        "strategy.canary.analysis.min_duration": "10s",
    }
    recorded, _made, engine = _recorded(
        tmp_path, shipped_policy, 2000, changes={"strategy.canary.steps": steps, **quick}
    )
    paused = engine.run(engine.begin("v2"))
    assert paused.pause_kind == "manual"
    engine.run(engine.advance(paused, passed_by_hand=True))  # `promote`
    lines = _changes(follow(recorded, "lines"))
    assert re.fullmatch(r"step 1 of 3 passed after .*; pausing 20 s", lines[2])
    assert lines[3] == "step 2 of 3: canary at 25%"
    assert re.fullmatch(
        r"step 2 of 3 passed after 10 s; waiting for `swiftdeploy promote`", lines[4]
    )
    assert lines[5] == "step 3 of 3: canary at 50%"
    assert lines[-1].startswith("promoted: v2 is stable")


def test_attaching_later_says_where_the_rollout_stands(healthy: Recorded) -> None:
    # Given a client that first sees the rollout a minute into step 1
    start = healthy.timeline[0][0]
    at, state = next((t, s) for t, s in healthy.timeline if t >= start + 60)
    found = changes(None, state, healthy.manifest, at)
    assert [change.text for change in found] == [
        "rollout of v2 (stable v1), started 1 min ago",
        "step 1 of 3: canary at 10%",
    ]
    # and nothing is said for a rollout that has ended (the caller says how)
    assert changes(None, healthy.timeline[-1][1], healthy.manifest, at) == []


def test_a_step_waiting_for_an_approval_says_so_and_then_who_approved_it(
    healthy: Recorded,
) -> None:
    # Given the last step's final look, then the step passed and held ~10 minutes for
    # hook approve (confirm-promotion), answering 403, as the engine saves it
    last = [(t, s) for t, s in healthy.timeline
            if s.phase == Phase.PROGRESSING and s.step_index == 2 and s.last_look]  # fmt: skip
    passed_at, looked = last[-1]
    step = next(s for s in looked.evidence.steps if s.index == 2)
    wait = HookWait(type="confirm-promotion", hooks=("approve",), step=2, since=passed_at)
    answer = HookAnswer(type="confirm-promotion", result="refused", status=403,
                        at=passed_at + 1, step=2)  # fmt: skip
    waiting = looked.model_copy(update={"awaiting": wait, "hooks": {"approve": answer},
                                        "message": "waiting for the confirm-promotion hook"
                                        " approve to answer 2xx"})  # fmt: skip
    clock = Clock(passed_at)
    console = Console(file=io.StringIO(), width=200, color_system=None)
    follower = RolloutFollower(console, healthy.manifest, mode="lines", clock=clock)
    follower.update(waiting)
    # When 3 min 10 s went by
    clock.now = passed_at + 190
    # Then the heartbeat says the step passed and what it waits for, with no ETA
    took = format_duration(passed_at - step.started_at)
    assert follower.heartbeat() == (
        f"step 3 of 3 passed after {took}; waiting for hook approve (confirm-promotion): "
        "HTTP 403 for 3 min 10 s"
    )
    assert follower.eta() is None
    # and the live view says the same in place of the evidence's progress
    follower.live = None
    frame = follower.render()
    with console.capture() as captured:
        console.print(frame)
    assert "waiting for hook approve (confirm-promotion): HTTP 403 for 3 min 10 s" in (
        captured.get()
    )
    assert "enough evidence" not in captured.get()
    # When the hook says yes 9 min 40 s after the step passed, and the rollout promotes
    promoting = next(s for _, s in healthy.timeline if s.phase == Phase.PROMOTING)
    promoting = promoting.model_copy(update={"updated_at": passed_at + 580})
    (change,) = changes(waiting, promoting, healthy.manifest, passed_at + 580)
    # Then the step passed when it did, and the approval took the rest
    assert change.text.startswith(
        f"step 3 of 3 passed after {took}; approved by hook approve after 9 min 40 s; promoting"
    )


# --- a terminal --------------------------------------------------------------------------


def _frame(recorded: Recorded, seconds: float, mode: Mode = "live") -> str:
    """The live view `seconds` into the rollout, as text."""
    start = recorded.timeline[0][0]
    at, state = next((t, s) for t, s in recorded.timeline if t >= start + seconds)
    clock = Clock(at + 1.0)
    console = Console(file=io.StringIO(), force_terminal=True, width=120, color_system=None)
    follower = RolloutFollower(console, recorded.manifest, mode=mode, clock=clock)
    follower.update(state)
    with console.capture() as captured:
        console.print(follower.render())
    return captured.get()


def test_the_live_view_shows_step_eta_tracks_and_plain_words(healthy: Recorded) -> None:
    frame = _frame(healthy, 40)
    assert "step 1 of 3, canary at 10%" in frame
    assert re.search(r"│ time\s+│ 41 s in the step, 41 s in the rollout", frame)
    assert re.search(r"│ ETA\s+│ about \d+ (min|s)", frame)
    assert re.search(r"│ canary\s+│ [\d,]+ req, 5xx \d+ \(\d+\.\d\d%\), p99 \d+ ms", frame)
    assert re.search(r"│ stable\s+│ [\d,]+ req, 5xx \d+", frame)
    assert re.search(
        r"│ progress\s+│ (warming up: .* left; )?needs about [\d,]+ more canary", frame
    )
    assert re.search(r"│ last look\s+│ \d+ s ago: hold\s+│", frame)  # no statistics
    assert "e-value" not in frame
    assert "rolls back at" not in frame
    # --verbose on a terminal adds the statistics behind the words
    verbose = _frame(healthy, 40, "verbose")
    assert re.search(r"│ statistics\s+│ evidence of harm: [\d.]+ \(rolls back at 100\)", verbose)
    later = _frame(healthy, 100)
    assert "step 2 of 3, canary at 25%" in later or "step 3 of 3" in later


def test_a_whole_rollout_live_leaves_only_its_changes(healthy: Recorded) -> None:
    output = follow(healthy, "live", terminal=True, poll_s=1.0, tick_s=2.0)  # fewer frames
    assert "rollout of v2 started (stable v1)" in output
    assert "promoted: v2 is stable" in output
    assert "step 1 of 3, canary at 10%" in output  # the view was drawn


def test_no_traffic_live_agrees_with_the_plan(no_traffic: Recorded) -> None:
    # like `rollout --plan` and the warning at the start: no traffic, no ETA, and when
    # the step holds
    frame = _frame(no_traffic, 45)
    assert re.search(r"│ progress\s+│ no canary traffic yet; holds at max_duration in 1 min", frame)
    assert re.search(r"│ ETA\s+│ -", frame)


# --- text from the canary ----------------------------------------------------------------


@pytest.mark.parametrize("mode", ["verbose", "lines"])
@pytest.mark.parametrize("terminal", [True, False], ids=["terminal", "pipe"])
def test_the_follower_prints_the_canarys_words_literally(
    tmp_path: Path, terminal: bool, mode: Mode
) -> None:
    manifest = init_manifest(tmp_path).manifest
    running = State(
        phase=Phase.PROGRESSING, rollout_id="r1", canary_version="v2", stable_version="v1",
        canary_weight=10, step_index=0, step_started_at=100.0, auto_advance=True,
    )  # fmt: skip
    held = running.model_copy(
        update={
            "phase": Phase.PAUSED,
            "pause_kind": "held",
            "message": HOSTILE,
            "last_look": LastLook(at=160.0, action="held", reasons=(HOSTILE,)),
        }
    )
    buffer = io.StringIO()
    console = Console(file=buffer, force_terminal=terminal, width=400, color_system=None)
    clock = Clock(100.0)
    with RolloutFollower(console, manifest, mode=mode, clock=clock) as follower:
        follower.update(running)
        clock.now = 161.0
        follower.update(held)
        follower.tick()
    shown = buffer.getvalue()
    assert f"warning: held at step 1 of 3 (10%): {HOSTILE}" in shown
    if terminal and mode == "verbose":  # and in the live view: its note and last look
        assert shown.count(HOSTILE) >= 3
