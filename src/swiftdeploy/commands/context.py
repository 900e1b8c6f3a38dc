"""Builds a command's dependencies from the manifest path; nothing here decides anything."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import httpx

from swiftdeploy.audit.recorder import AuditRecorder
from swiftdeploy.commands.audit import open_audit_log
from swiftdeploy.fleet import Fleet, Progress
from swiftdeploy.lock import project_lock
from swiftdeploy.manifest import LoadedManifest
from swiftdeploy.runtime import backend
from swiftdeploy.runtime.base import BackendDeps
from swiftdeploy.traffic import HOST_ROUTER, create_router


def open_fleet(loaded: LoadedManifest, progress: Progress) -> Fleet:
    """The fleet of a project: its tracks on the manifest's runtime, its platform
    processes, router, state, HTTP client and audit trail."""
    runtime = backend(loaded.manifest.runtime)
    deps = BackendDeps(
        loaded=loaded,
        store=runtime.state_store(loaded),
        http=httpx.Client(timeout=2.0, trust_env=False),
        progress=progress,
        processes=runtime.process_manager(loaded),
        router=(
            create_router(HOST_ROUTER, loaded.manifest, loaded.state_dir)
            if runtime.NGINX_ROUTED
            else None
        ),
    )
    return Fleet(
        loaded=loaded,
        tracks=runtime.create_tracks(deps),
        processes=deps.processes,
        router=deps.router,
        store=deps.store,
        http=deps.http,
        progress=progress,
        recorder=AuditRecorder(open_audit_log(loaded)),
    )


@contextmanager
def project_locks(loaded: LoadedManifest) -> Iterator[None]:
    """What a mutating command holds: the project's lock, then its runtime's."""
    with project_lock(loaded.state_dir), backend(loaded.manifest.runtime).shared_lock(loaded):
        yield
