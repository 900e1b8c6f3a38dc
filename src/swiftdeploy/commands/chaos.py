"""`swiftdeploy chaos`: inject errors or latency into one track's replicas, or recover.

The CLI talks to each replica directly with the project's bearer token; /chaos is
never reachable through the public nginx listener.
"""

from __future__ import annotations

import httpx

from swiftdeploy.errors import BadInputError, OperationalError
from swiftdeploy.fleet import Fleet
from swiftdeploy.runtime.hosted import chaos_token
from swiftdeploy.state import Track


def set_chaos(
    fleet: Fleet,
    track: Track,
    error_rate: float | None,
    latency_ms: float | None,
    duration_s: float | None,
    recover: bool,
) -> list[str]:
    if not fleet.loaded.manifest.service.chaos:
        raise BadInputError(
            f"{fleet.loaded.where('service.chaos')}: chaos is not enabled for this service",
            hint="set service.chaos: true and redeploy",
        )
    if not recover and error_rate is None and latency_ms is None:
        raise BadInputError("give --error-rate and/or --latency-ms, or --recover")
    if error_rate is not None and not 0 <= error_rate <= 1:
        raise BadInputError(
            f"--error-rate {error_rate} is outside 0-1", hint="a fraction: 0.05 means 5%"
        )
    if latency_ms is not None and latency_ms < 0:
        raise BadInputError("--latency-ms cannot be negative")
    state = fleet.store.load()
    replicas = state.track(track)
    if not replicas:
        raise BadInputError(f"no {track} replicas are running")
    headers = {"Authorization": f"Bearer {chaos_token(fleet.state_dir)}"}
    body = {"error_rate": error_rate or 0.0, "latency_ms": latency_ms or 0.0}
    if duration_s:
        body["duration_s"] = duration_s
    fleet.recorder.record(
        "chaos",
        rollout_id=state.rollout_id,
        track=track,
        error_rate=None if recover else body["error_rate"],
        latency_ms=None if recover else body["latency_ms"],
        duration_s=duration_s,
        recover=recover,
    )
    done = []
    for replica in replicas:
        url = f"http://{replica.endpoint}/chaos"
        try:
            if recover:
                response = fleet.http.delete(url, headers=headers)
            else:
                response = fleet.http.post(url, headers=headers, json=body)
        except httpx.HTTPError as exc:
            raise OperationalError(f"{replica.name}: chaos request failed: {exc}") from None
        if response.status_code != 200:
            raise OperationalError(
                f"{replica.name}: chaos refused (HTTP {response.status_code}: "
                f"{response.text.strip()[:120]})"
            )
        done.append(replica.name)
    return done
