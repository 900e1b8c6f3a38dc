"""What the command modules share: the consoles, the options, the manifest read and
the command context (`commands.context`) with the CLI's voice. Heavy modules (the
fleet, the engines, scipy through the statistics) are imported inside the functions
that need them, so `--help` and `--version` start in a fraction of a second."""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager
from enum import StrEnum
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from swiftdeploy import DEFAULT_MANIFEST
from swiftdeploy.cli.app import MANIFEST_ENV, manifest_path
from swiftdeploy.cli.helptext import no_color
from swiftdeploy.durations import format_duration, parse_duration
from swiftdeploy.errors import BadInputError

if TYPE_CHECKING:
    from swiftdeploy.commands.context import CommandContext
    from swiftdeploy.manifest import LoadedManifest
    from swiftdeploy.state import State

# Piped output keeps whole tables rather than rich's 80-column default, and its lines
# whole (soft_wrap: no line break a log search would trip on). NO_COLOR: no styling at
# all (rich drops only colours; color_system=None drops bold and italic too).
_STYLES: Literal["auto"] | None = None if no_color() else "auto"
out = Console(
    highlight=False,
    width=None if sys.stdout.isatty() else 160,
    soft_wrap=not sys.stdout.isatty(),
    color_system=_STYLES,
)
err = Console(stderr=True, highlight=False, soft_wrap=not sys.stderr.isatty(), color_system=_STYLES)


_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def printable(text: str) -> str:
    """Text from a file someone else may have written (the audit trail), with control
    characters shown as escapes, so it cannot move the cursor or recolour a terminal."""
    return _CONTROL.sub(lambda match: repr(match.group())[1:-1], text)


def _duration(text: str, floor: float = 0.0) -> float:
    # BadParameter, not ValueError: typer would prefix pydantic's "Value error, "
    try:
        seconds = parse_duration(text)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    if seconds < floor:
        raise typer.BadParameter(f"{text} is under {format_duration(floor)}")
    return seconds


def duration_parser(floor: float = 0.0) -> Callable[[str], float]:
    """A typer `parser` for a duration option (`2s`, `1m30s`, plain seconds), one parser
    for all (`durations.parse_duration`); under `floor` is refused."""
    return partial(_duration, floor=floor)


Choice = TypeVar("Choice", bound=StrEnum)


def choice(kind: type[Choice]) -> dict[str, Any]:
    """typer.Option keywords for one of `kind`'s values, refused in the CLI's words
    ("'x' is not one of a, b.") rather than pydantic's."""
    names = [member.value for member in kind]

    def parse(text: str) -> Choice:
        try:
            return kind(text)
        except ValueError:
            raise typer.BadParameter(f"{text!r} is not one of {', '.join(names)}.") from None

    return {"parser": parse, "metavar": "|".join(names)}


ManifestOption = Annotated[
    Path,
    typer.Option(
        "-f",
        "--file",
        "--manifest",
        envvar=MANIFEST_ENV,
        callback=manifest_path,
        metavar="PATH",
        help="The manifest (also before the command; else $SWIFTDEPLOY_MANIFEST).",
        show_default=True,
    ),
]
DEFAULT_PATH = Path(DEFAULT_MANIFEST)
JsonOption = Annotated[bool, typer.Option("--json", help="Print data as JSON.")]
WindowOption = Annotated[
    float | None,
    typer.Option(
        parser=duration_parser(),
        metavar="DURATION",
        help="The last stretch of traffic to show, e.g. 30s or 5m (default: metrics.window).",
    ),
]
ForceOption = Annotated[
    bool, typer.Option("--force", help="Go on although the canary policy refuses (needs --reason).")
]
ReasonOption = Annotated[
    str | None, typer.Option("--reason", help="Why the refusal is overridden (recorded).")
]


def progress(message: str) -> None:
    # one line however narrow the terminal (or a driver's log): a warning said through
    # progress (route drift) stays one line a log search finds
    err.print(f"[cyan]•[/] {escape(message)}", markup=True, highlight=False, soft_wrap=True)


def warn(lines: Iterable[str]) -> None:
    """Each line on stderr as `warning: ...`, one line however narrow the terminal."""
    for line in lines:
        err.print(f"warning: {line}", markup=False, soft_wrap=True)


def print_json(data: Any) -> None:
    out.print_json(json.dumps(data, default=str))


def summary(state: State) -> str:
    text = f"phase {state.phase.value}; stable {state.stable_version or '-'}"
    if state.canary_version:
        text += f"; canary {state.canary_version} at {state.canary_weight}%"
    return text


def read_manifest(manifest: Path) -> LoadedManifest:
    """The manifest at `manifest`, read and validated (a bad one is one clear error)."""
    from swiftdeploy.manifest import load_manifest

    return load_manifest(manifest)


def command(
    loaded: LoadedManifest,
    *,
    preflight: bool = False,
    version: str | None = None,
    lock: bool = False,
    gate: str | None = None,
) -> AbstractContextManager[CommandContext]:
    """The command's parts through its gates (`commands.context`), saying its progress
    and warnings on stderr."""
    from swiftdeploy.commands.context import command_context

    return command_context(
        loaded, progress, preflight=preflight, version=version, lock=lock, gate=gate, warn=warn
    )


def force_reason(force: bool, reason: str | None) -> str | None:
    if force and not (reason and reason.strip()):
        raise BadInputError("--force needs --reason TEXT", hint="say why; it is recorded")
    if reason is not None and not force:
        raise BadInputError("--reason is only used with --force")
    return reason.strip() if force and reason else None
