"""`measure(fleet, tracks, window_s)` on loopback: each track's last window as the
manifest's provider (init's: nginx's own counters) measured it, the requests sent
before the command ran included."""

from __future__ import annotations

import math
import time

import httpx
from bench.support.project import Project

from swiftdeploy.commands.context import command_context
from swiftdeploy.commands.metrics import measure
from swiftdeploy.manifest import load_manifest


def test_each_track_is_measured_from_the_routers_history(deployed: Project) -> None:
    with httpx.Client(timeout=5) as client:
        for _ in range(40):
            assert client.get(deployed.url).status_code == 200
    # the window ends at the last whole second: wait for the one the traffic ended in
    # to close (else, on a fast machine, all 40 may fall in the second being measured)
    time.sleep(math.floor(time.time()) + 1.05 - time.time())
    loaded = load_manifest(deployed.manifest)
    with command_context(loaded, lambda _: None) as context:
        measured = measure(context.fleet, ["stable", "canary"], 60.0)
    stable, canary = measured["stable"], measured["canary"]
    assert (stable.provider, stable.track) == ("nginx", "stable")
    assert stable.requests >= 40
    assert stable.errors == 0
    assert canary.requests == 0  # no canary: nothing routed to it
