"""`swiftdeploy events`: the project's state changes as CloudEvents, read from its audit
trail (`swiftdeploy.audit.events`); the flag wiring is in `swiftdeploy.cli.events`."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from swiftdeploy.audit.events import Event, parse_since, read_events
from swiftdeploy.commands.audit import settings
from swiftdeploy.manifest import LoadedManifest


def project_events(
    loaded: LoadedManifest,
    *,
    since: str | None = None,
    rollout: str | None = None,
    follow: bool = False,
    stop: Callable[[], bool] = lambda: False,
) -> Iterator[Event]:
    """The events of the project's trail, oldest first; with `follow`, then those
    written later until `stop()`. A bad `since` raises BadInputError before any is read."""
    after = parse_since(since) if since is not None else None
    return read_events(
        settings(loaded).path,
        loaded.manifest.service.name,
        since=after,
        rollout=rollout,
        steps=len(loaded.manifest.strategy.canary.steps),
        follow=follow,
        stop=stop,
    )
