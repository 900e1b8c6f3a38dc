"""Builds a command's dependencies from the manifest path; nothing here decides anything."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx

from swiftdeploy.audit.log import AuditLog
from swiftdeploy.commands.audit import open_audit_log
from swiftdeploy.fleet import Fleet, Progress
from swiftdeploy.manifest import LoadedManifest, load_manifest
from swiftdeploy.rollout.state import StateStore
from swiftdeploy.runtime import create_runtime
from swiftdeploy.traffic import create_router

RUNTIME = "local"
ROUTER = "nginx"


class AuditRecorder:
    """The fleet's recorder: every record goes to the audit trail before the action."""

    def __init__(self, log: AuditLog) -> None:
        self.log = log

    def record(self, kind: str, **fields: Any) -> None:
        self.log.append(kind, **fields)


def open_fleet(loaded: LoadedManifest, progress: Progress) -> Fleet:
    """The fleet of a project: its runtime, router, state, HTTP client and audit trail."""
    store = StateStore(loaded.state_dir)
    return Fleet(
        loaded=loaded,
        runtime=create_runtime(RUNTIME, loaded.state_dir),
        router=create_router(ROUTER, loaded.manifest, loaded.state_dir),
        store=store,
        http=httpx.Client(timeout=2.0, trust_env=False),
        progress=progress,
        recorder=AuditRecorder(open_audit_log(loaded)),
    )


def load(path: Path) -> LoadedManifest:
    return load_manifest(path)
