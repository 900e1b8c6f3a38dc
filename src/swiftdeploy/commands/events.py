"""`swiftdeploy events`: the project's state changes as CloudEvents, read from its audit
trail (`swiftdeploy.review.events`); the flag wiring is in `swiftdeploy.cli.events`."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

from swiftdeploy.commands.audit import settings
from swiftdeploy.manifest import LoadedManifest
from swiftdeploy.review.events import Event, Since, parse_since, read_events

CLUSTER_POLL_S = 2.0  # a list of the trail's ConfigMaps each time: not every 0.25 s


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
    if loaded.manifest.runtime == "kubernetes":
        return _cluster_events(loaded, after, rollout, follow, stop)
    return read_events(
        settings(loaded).path,
        loaded.manifest.service.name,
        since=after,
        rollout=rollout,
        steps=len(loaded.manifest.strategy.canary.steps),
        follow=follow,
        stop=stop,
    )


def _cluster_events(
    loaded: LoadedManifest,
    since: Since | None,
    rollout: str | None,
    follow: bool,
    stop: Callable[[], bool],
) -> Iterator[Event]:
    """The cluster's trail, copied here at every poll (`cluster_trail.sync`); each event
    once (an event's id is its record's hash)."""
    from swiftdeploy.commands.cluster_trail import sync

    told: set[str] = set()
    while True:
        path = sync(loaded).path
        for event in read_events(
            path,
            loaded.manifest.service.name,
            since=since,
            rollout=rollout,
            steps=len(loaded.manifest.strategy.canary.steps),
        ):
            if event["id"] not in told:
                told.add(event["id"])
                yield event
        if not follow or stop():
            return
        time.sleep(CLUSTER_POLL_S)
