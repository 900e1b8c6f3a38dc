"""`swiftdeploy ci github`: a rollout as one step of a GitHub Actions job (the
repository's `action.yml` runs it); the flag wiring is in `swiftdeploy.cli.ci`.

It runs `swiftdeploy rollout VERSION --wait --json --events-file FILE` as a child, whose
lines (one per state change) stream to the job's log, as do its events (one readable
line each, read from the file as the child writes them), and then writes what CI reads:
the outcome, `audit why` and the HTML report of `audit report`, as the step's outputs
(`$GITHUB_OUTPUT`) and its job summary (`$GITHUB_STEP_SUMMARY`). It uploads nothing,
and its exit code is the rollout's.
"""

from __future__ import annotations

import contextlib
import json
import re
import secrets
import shlex
import subprocess
import sys
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from swiftdeploy.commands.audit import trail_of, why, write_report
from swiftdeploy.errors import BadInputError, ExitCode, OperationalError, SwiftDeployError
from swiftdeploy.fsutil import UnsafeDirError, own_dir
from swiftdeploy.manifest import load_manifest

EVENTS_NAME = "events.jsonl"
# Set by `ci github` itself: how the rollout is followed, and the manifest (an input).
RESERVED_ARGS = frozenset(
    {"--detach", "--plan", "--json", "--events", "--events-file", "-f", "--manifest"}
)
# Every output the step sets, in the order written (action.yml declares the same).
OUTPUT_NAMES = (
    "outcome", "exit-code", "version", "rollout-id", "message", "why", "report", "events",
)  # fmt: skip


@dataclass(frozen=True)
class CiRequest:
    version: str
    manifest: Path
    out_dir: Path
    rollout_args: tuple[str, ...] = ()


@dataclass(frozen=True)
class GithubFiles:
    """Where a step's outputs and its job summary go (set by the runner)."""

    output: Path
    summary: Path


@dataclass(frozen=True)
class CiResult:
    version: str
    exit_code: int
    # promoted, paused (a step waits for `promote`), rolled-back, held, stopped (another
    # rollout replaced it), failed (the rollout command ended without an outcome)
    outcome: str
    message: str
    rollout_id: str | None
    events: Path | None  # None: refused before the rollout ran
    report: Path | None
    why: list[str]
    warnings: list[str]


# --- the request ---------------------------------------------------------------------


def github_files(environ: Mapping[str, str]) -> GithubFiles:
    """The runner's files; refused before anything runs when they are not set."""
    missing = [name for name in ("GITHUB_OUTPUT", "GITHUB_STEP_SUMMARY") if not environ.get(name)]
    if missing:
        raise BadInputError(
            f"{' and '.join(missing)} not set: `ci github` runs as a step of a GitHub Actions job",
            hint="elsewhere: `swiftdeploy rollout VERSION --wait --events-file FILE`",
        )
    return GithubFiles(Path(environ["GITHUB_OUTPUT"]), Path(environ["GITHUB_STEP_SUMMARY"]))


def rollout_args(text: str) -> tuple[str, ...]:
    """More arguments for `rollout`, as one shell-quoted string (the action's input)."""
    try:
        words = shlex.split(text)
    except ValueError as exc:
        raise BadInputError(f"rollout arguments {text!r}: {exc}") from None
    for word in words:
        flag = word.split("=", 1)[0]
        if flag in ("--detach", "--plan"):
            raise BadInputError(
                f"rollout arguments: {flag} does not go with `ci github`, which follows the"
                " rollout to its outcome",
                hint=f"for that, run `swiftdeploy rollout VERSION {flag}` in a step of its own",
            )
        if flag in ("-f", "--manifest"):
            raise BadInputError(
                f"rollout arguments: {flag}: the manifest is the action's own input",
                hint="set the action's `manifest` input (`ci github -f FILE`)",
            )
        if flag in RESERVED_ARGS:
            raise BadInputError(
                f"rollout arguments: {flag} is set by `ci github` itself (it follows the"
                " rollout with --wait --json --events-file)",
                hint="--quiet, --verbose and the like go through",
            )
    return tuple(words)


def prepare(request: CiRequest) -> Path:
    """The output directory made (0700, never through another user's link); the path
    of the events file in it."""
    try:
        with own_dir(request.out_dir):
            pass
    except UnsafeDirError as exc:
        raise BadInputError(
            f"refusing to write in {request.out_dir}: it {exc}",
            hint="give a directory of your own, or a new name (made 0700)",
        ) from None
    except OSError as exc:
        raise OperationalError(f"cannot make {request.out_dir}: {exc.strerror or exc}") from None
    return request.out_dir / EVENTS_NAME


# --- the rollout ----------------------------------------------------------------------


@dataclass(frozen=True)
class Finished:
    """How the rollout command ended: its code, its JSON summary (None when it printed
    none: it failed before an outcome), and its last error line."""

    code: int
    summary: dict[str, Any] | None
    error: str | None


def rollout_argv(request: CiRequest, events: Path) -> list[str]:
    # the interpreter that runs this CLI: a console script may not be on PATH
    return [
        sys.executable, "-m", "swiftdeploy.cli", "rollout", request.version,
        "--wait", "--json", "--events-file", str(events), "-f", str(request.manifest),
        *request.rollout_args,
    ]  # fmt: skip


def run_rollout(argv: list[str], events: Path | None = None) -> Finished:
    """Run the rollout command with its stderr (the lines for people) passed on to ours
    as it comes, and each event it writes to `events` as one line as it is recorded;
    its stdout is its JSON summary, anything else there is passed on."""
    child = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    errors: list[str] = []
    relay = threading.Thread(target=_relay, args=(child.stderr, errors), daemon=True)
    relay.start()
    done = threading.Event()
    tail = threading.Thread(target=_tail_events, args=(events, done), daemon=True)
    if events is not None:
        tail.start()
    summary = None
    try:
        assert child.stdout is not None
        for line in child.stdout:
            found = _summary(line)
            if found is None:
                _say(sys.stdout, line)
            summary = found or summary
        code = child.wait()
    finally:
        if child.poll() is None:  # we were interrupted: the follower only, not the rollout
            child.terminate()
            child.wait()
        done.set()
        if tail.is_alive():
            tail.join(timeout=10)
        relay.join(timeout=10)
    return Finished(code, summary, errors[-1] if errors else None)


_SAYING = threading.Lock()  # the three streams' lines stay whole in the log
TAIL_POLL_S = 0.2


def _say(stream: IO[str], line: str) -> None:
    with _SAYING:
        stream.write(line)
        stream.flush()


def _tail_events(path: Path, done: threading.Event) -> None:
    """Follow the events file the rollout command writes (flushed at each event): one
    readable line per event on stdout as it comes, until `done` and the file is read."""
    handle: IO[str] | None = None
    pending = ""
    try:
        while True:
            finished = done.is_set()  # read once more after the command ended
            if handle is None:
                with contextlib.suppress(OSError):
                    handle = path.open(encoding="utf-8")
            if handle is not None:
                pending += handle.read()
                *lines, pending = pending.split("\n")
                for line in lines:
                    if line.strip():
                        _say(sys.stdout, f"{event_line(_json(line))}\n")
            if finished:
                return
            done.wait(TAIL_POLL_S)
    finally:
        if handle is not None:
            handle.close()


_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def event_line(event: Mapping[str, Any]) -> str:
    """An event in one line for people: `event 19:47:50 rollout.step: step 1: canary
    weight 20%` (what the type's data says best; the JSON is in the events file)."""
    kind = str(event.get("type", "?")).removeprefix("dev.swiftdeploy.")
    kind = re.sub(r"\.v\d+$", "", kind)
    at = str(event.get("time", ""))[11:19] or "--:--:--"
    data = event.get("data") if isinstance(event.get("data"), dict) else {}
    assert isinstance(data, dict)
    if data.get("reason"):
        said = str(data["reason"])
    elif kind.startswith("hook."):
        status = f" (HTTP {data['status']})" if data.get("status") else ""
        error = f": {data['error']}" if data.get("error") else ""
        said = f"{data.get('hook')} {data.get('result')}{status}{error}"
    elif kind.startswith("driver."):
        said = str(data.get("outcome") or f"pid {data.get('pid')}")
    else:
        said = ", ".join(
            f"{key} {value}"
            for key, value in data.items()
            if key not in ("rollout_id", "by") and value is not None
        )
    by = f" (by {data['by']})" if data.get("by") and kind.startswith(("request.", "gate.")) else ""
    # recorded text (reasons people typed): no control character reaches the log
    return _CONTROL.sub("?", f"event {at} {kind}: {said}{by}")


def _relay(stream: IO[str] | None, errors: list[str]) -> None:
    assert stream is not None
    for line in stream:
        _say(sys.stderr, line)
        if line.startswith("swiftdeploy: error: "):
            errors.append(line.removeprefix("swiftdeploy: error: ").strip())


def _json(line: str) -> dict[str, Any]:
    """The JSON object on a line; {} for anything else."""
    try:
        data = json.loads(line)
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def _summary(line: str) -> dict[str, Any] | None:
    data = _json(line)
    return data if data.get("look") == "summary" else None


# The outcome of a rollout command that printed its summary, by its exit code (0: by
# the phase it ended in).
_BY_CODE: dict[int, str] = {ExitCode.DENIED: "rolled-back", ExitCode.HELD: "held"}
_BY_PHASE = {"promoted": "promoted", "paused": "paused"}


def outcome(finished: Finished) -> tuple[str, str, int]:
    """(outcome, message, exit code) of the rollout command."""
    summary = finished.summary
    if summary is None:
        message = finished.error or f"the rollout command exited {finished.code} with no outcome"
        # exit 0 with no outcome (its follower detached): not a success for CI
        return "failed", message, finished.code or int(ExitCode.OPERATIONAL)
    message = str(summary.get("message", ""))
    if finished.code != ExitCode.OK:
        return _BY_CODE.get(finished.code, "failed"), message, finished.code
    return _BY_PHASE.get(str(summary.get("phase")), "stopped"), message, finished.code


def rollout_id_of(finished: Finished, events: Path) -> str | None:
    """The summary's rollout id, else the events' (a rollout that started, then failed)."""
    if finished.summary is not None and finished.summary.get("rollout_id"):
        return str(finished.summary["rollout_id"])
    try:
        lines = events.read_text(encoding="utf-8").splitlines()
    except OSError:
        return None
    for line in lines:
        subject = _json(line).get("subject")
        if subject:
            return str(subject)
    return None


def explain(request: CiRequest, rollout_id: str) -> tuple[list[str], Path | None, list[str]]:
    """(`audit why` lines, the HTML report, warnings): what cannot be had is a warning,
    never the step's outcome."""
    try:
        source = trail_of(load_manifest(request.manifest))
        lines, warnings = why(source, rollout_id)
        files = write_report(source, request.out_dir, rollout_id)
    except SwiftDeployError as exc:
        return [], None, [f"no audit why or report: {exc.one_line()}"]
    return lines, files.html, warnings + files.warnings


def run_ci(request: CiRequest, github: GithubFiles) -> CiResult:
    """The rollout, then the outputs and the job summary; the result for the log."""
    try:
        events = prepare(request)
    except SwiftDeployError as exc:
        refuse(request.version, exc, github)
        raise
    finished = run_rollout(rollout_argv(request, events), events)
    name, message, code = outcome(finished)
    rollout_id = rollout_id_of(finished, events)
    lines, report, warnings = explain(request, rollout_id) if rollout_id else ([], None, [])
    result = CiResult(
        request.version, code, name, message, rollout_id, events, report, lines, warnings
    )
    _write(result, github)
    return result


def refuse(version: str, error: SwiftDeployError, github: GithubFiles) -> None:
    """A step refused before the rollout ran (its arguments, its output directory):
    still the outputs (`outcome: failed`, the error's exit code and line) and the
    summary, as for a rollout that could not start; the caller then raises `error`."""
    result = CiResult(
        version, int(error.exit_code), "failed", error.one_line(), None, None, None, [], []
    )
    _write(result, github)


def _write(result: CiResult, github: GithubFiles) -> None:
    _append(github.output, output_text(outputs(result)), "GITHUB_OUTPUT")
    _append(github.summary, summary_markdown(result), "GITHUB_STEP_SUMMARY")


# --- what GitHub reads ------------------------------------------------------------------


def outputs(result: CiResult) -> dict[str, str]:
    values = {
        "outcome": result.outcome,
        "exit-code": str(result.exit_code),
        "version": result.version,
        "rollout-id": result.rollout_id or "",
        "message": result.message,
        "why": "\n".join(result.why),
        "report": str(result.report or ""),
        "events": str(result.events or ""),
    }
    assert tuple(values) == OUTPUT_NAMES
    return values


def output_text(values: Mapping[str, str]) -> str:
    """`name<<DELIMITER` blocks (GitHub's form for multi-line values), each delimiter
    random and absent from its value, so no value can end its block early and set
    another output."""
    blocks = []
    for name, value in values.items():
        delimiter = f"swiftdeploy_{secrets.token_hex(8)}"
        while delimiter in value:
            delimiter = f"swiftdeploy_{secrets.token_hex(8)}"
        blocks.append(f"{name}<<{delimiter}\n{value}\n{delimiter}\n")
    return "".join(blocks)


def summary_markdown(result: CiResult) -> str:
    """The job summary: outcome, version, rollout id, the `audit why` lines, and where
    the report and the events are. Recorded text (reasons people typed) is shown in
    code blocks, so it cannot be read as Markdown."""
    rollout = _code(result.rollout_id) if result.rollout_id else "none (it did not start)"
    lines = [
        f"### SwiftDeploy: rollout of {_code(result.version)} {result.outcome}",
        "",
        "| outcome | exit code | version | rollout id |",
        "| --- | --- | --- | --- |",
        f"| {result.outcome} | {result.exit_code} | {_code(result.version)} | {rollout} |",
        "",
        _fenced([result.message]),
    ]
    if result.why:
        lines += ["", f"**Why** (`swiftdeploy audit why {result.rollout_id}`)", ""]
        lines.append(_fenced(result.why))
    lines += [""]
    if result.report is not None:
        lines.append(f"- Report: {_code(str(result.report))} (step output `report`)")
    if result.events is not None:
        lines.append(f"- Events: {_code(str(result.events))} (step output `events`)")
    lines.append("- Nothing was uploaded: `actions/upload-artifact` with these paths keeps them.")
    lines += [f"- Warning: {_code(warning)}" for warning in result.warnings]
    return "\n".join(lines) + "\n"


def _code(text: str) -> str:
    """An inline code span that holds any text (CommonMark: a longer backtick fence)."""
    fence = "`" * (max(map(len, re.findall("`+", text)), default=0) + 1)
    return f"{fence} {text} {fence}" if fence != "`" else f"`{text}`"


def _fenced(lines: list[str]) -> str:
    fence = "`" * max(3, max(map(len, re.findall("`+", "\n".join(lines))), default=0) + 1)
    return "\n".join([f"{fence}text", *lines, fence])


def _append(path: Path, text: str, name: str) -> None:
    try:
        with path.open("a", encoding="utf-8") as handle:
            handle.write(text)
    except OSError as exc:
        raise OperationalError(f"cannot write ${name} ({path}): {exc.strerror or exc}") from None
