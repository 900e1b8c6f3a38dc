"""`swiftdeploy events`: flag wiring only; the work is in `swiftdeploy.commands.events`.

One event per line on stdout, as compact JSON (ASCII, so no character of a recorded
reason can reach a terminal as a control sequence). `--follow` is a follower: Ctrl-C
or a closed pipe ends it quietly, exit 0.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Annotated

import typer

# Registered first, so that --help lists the project's and release's verbs before this one.
from swiftdeploy.cli import project, release  # noqa: F401
from swiftdeploy.cli.app import app
from swiftdeploy.cli.common import DEFAULT_PATH, ManifestOption, read_manifest


@app.command("events")
def events(
    manifest: ManifestOption = DEFAULT_PATH,
    follow: Annotated[
        bool, typer.Option("--follow", help="Keep reading: print events as they are recorded.")
    ] = False,
    since: Annotated[
        str | None,
        typer.Option(
            help="Only events after record SEQ (an event's `seq`), at or after an ISO 8601 "
            "time (local without a zone), or within a duration ago (10m, 2h).",
        ),
    ] = None,
    rollout: Annotated[str | None, typer.Option(help="Only this rollout id's events.")] = None,
) -> None:
    """Every state change as a CloudEvents 1.0 JSON event per line (docs/events.md)."""
    from swiftdeploy.commands.events import project_events

    stream = project_events(read_manifest(manifest), since=since, rollout=rollout, follow=follow)
    try:
        for event in stream:
            typer.echo(json.dumps(event, separators=(",", ":")))
    except KeyboardInterrupt:
        if not follow:
            raise
    except BrokenPipeError:
        # The reader went away (`| head`): nothing more to say, and nothing to flush.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
