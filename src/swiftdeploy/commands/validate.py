"""`swiftdeploy validate`: schema, what the runtime checks, and for a runtime routed by
nginx, the listener and the rendered nginx config."""

from __future__ import annotations

from swiftdeploy.errors import BadInputError
from swiftdeploy.manifest import LoadedManifest
from swiftdeploy.ports import can_bind
from swiftdeploy.runtime import backend
from swiftdeploy.traffic import HOST_ROUTER, create_router


def preflight(loaded: LoadedManifest) -> list[str]:
    """Every check that can fail on the user's input, before anything is started.

    Returns what was checked; raises BadInputError naming the field on the first failure.
    """
    checks = notification_checks(loaded)
    runtime = backend(loaded.manifest.runtime)
    checks += runtime.preflight(loaded)
    if not runtime.NGINX_ROUTED:
        return checks
    traffic = loaded.manifest.traffic
    if not _listener_is_ours(loaded) and not can_bind(traffic.host, traffic.port):
        raise BadInputError(
            f"{loaded.where('traffic.listen')}: {traffic.listen} is already in use "
            "by another process",
            hint="choose a free port, e.g. `swiftdeploy init --listen 127.0.0.1:8081`",
        )
    checks.append(f"traffic.listen: {traffic.listen} is free or ours")
    router = create_router(HOST_ROUTER, loaded.manifest, loaded.state_dir)
    try:
        router.check()
    finally:
        router.close()
    checks.append(f"{router.name}: the rendered config is valid")
    return checks


def notification_checks(loaded: LoadedManifest) -> list[str]:
    """Each sink's `events` patterns name events this version writes (the manifest
    cannot know them: the event types live in review/events.py)."""
    from swiftdeploy.review.events import pattern_problem

    sinks = loaded.manifest.notifications.sinks
    for i, sink in enumerate(sinks):
        for j, pattern in enumerate(sink.events):
            problem = pattern_problem(pattern)
            if problem is not None:
                raise BadInputError(
                    f"{loaded.where(f'notifications.sinks[{i}].events[{j}]')}: {problem}",
                    hint="`*`, an area (`rollout.*`) or one event (`rollout.rolled-back`);"
                    " docs/events.md lists them",
                )
    return [f"notifications: {len(sinks)} sink(s), their events known"] if sinks else []


# Where a replica of each runtime on this machine listens, for any local user to reach
# (kubernetes: anything with a route to the pods, which the cluster's policies decide).
_REACHABLE_AT = {
    "local": "loopback port",
    "docker": "published 127.0.0.1 port or its container's address",
}


def evidence_warnings(loaded: LoadedManifest) -> list[str]:
    """Who else can add to the evidence: with a provider that counts at the replica
    (scrape, prometheus), every request that reaches one counts, whoever sent it."""
    manifest = loaded.manifest
    reach = _REACHABLE_AT.get(manifest.runtime)
    if manifest.metrics.provider == "nginx" or reach is None:
        return []
    return [
        f"{loaded.where('metrics.provider')}: {manifest.metrics.provider} counts requests at"
        f" the replicas, and any local user can send requests straight to a replica's"
        f" {reach}: they count as evidence and can tilt a rollout's decision; use"
        " metrics.provider: nginx (counts only what the public listener served) unless every"
        " local user is trusted (SECURITY.md, 'Who can reach a replica')"
    ]


def account_warnings(loaded: LoadedManifest, version: str | None = None) -> list[str]:
    """Who else can read a replica's secrets and signal it: on docker, a host account
    that has the uid its image runs as (one line; `runtime.image_user`). For `validate`
    (no version), also each secret of notifications and hooks that cannot be read from
    here: a command that starts a rollout reads them itself and stops on a missing one."""
    found = secret_warnings(loaded) if version is None else []
    if loaded.manifest.runtime != "docker":
        return found
    from swiftdeploy.runtime import docker

    return found + docker.user_warnings(loaded, version or loaded.manifest.service.version)


def secret_warnings(loaded: LoadedManifest) -> list[str]:
    """One line per secret ref not readable here: its field, the variable or Secret,
    and what it will cost (docs/notifications.md, 'Secrets')."""
    from swiftdeploy.notify.secrets import unresolved

    if loaded.manifest.runtime == "kubernetes":
        after = "the driver's pod reads it when it takes the Lease, and stops (exit 1) until it can"
    else:
        after = "without it `swiftdeploy rollout` refuses to start: exit 2"
    return [f"{problem} ({after})" for problem in unresolved(loaded)]


def _listener_is_ours(loaded: LoadedManifest) -> bool:
    processes = backend(loaded.manifest.runtime).process_manager(loaded).processes()
    return any(p.name == "nginx" and p.running for p in processes)
