"""The command line: parsing and printing only; the work is in `commands/`.
May import: every layer below (commands, rollout, fleet, the parts, the model).

`app` holds the commands of `project` (init ... teardown) and `release` (canary ...
rollback) and the sub-apps `policy`, `audit`, `kube` and `ci`; `run` is the one place
errors become exit codes. Importing this package loads no engine, provider or scipy:
commands import what they use when they run.
"""

from __future__ import annotations

from swiftdeploy.cli import audit, ci, events, judge, kube, policy, project, release
from swiftdeploy.cli.app import app, main, run

__all__ = [
    "app",
    "audit",
    "ci",
    "events",
    "judge",
    "kube",
    "main",
    "policy",
    "project",
    "release",
    "run",
]
