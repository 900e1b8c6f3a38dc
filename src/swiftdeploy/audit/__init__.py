"""The tamper-evident audit trail: a hash-chained JSON-lines log, its verifier and reports.

`log` appends records (rollout engine, commands), `verify` checks the chain,
`explain` turns records into rollouts and plain-word reasons, `report` renders them
(Markdown, self-contained HTML, `why`, exports), `cli` is the `swiftdeploy audit` group.
"""

from __future__ import annotations

from swiftdeploy.audit.log import AuditLog

__all__ = ["AuditLog"]
