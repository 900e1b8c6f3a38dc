"""The tamper-evident audit trail: a hash-chained JSON-lines log, its verifier and reports.
May import: policy (the Decision it records), state, manifest and the foundation.

`recorder` is what the engine and commands write through (repeated holds held back
and written several to a record, `looks`), `log` appends the records (MAC'd, with a
head), `verify` checks them, `checkpoint` signs a head; `explain` turns records into
rollouts and plain-word reasons, read by `why`, `export` and `report` (Markdown and
self-contained HTML). The `swiftdeploy audit` group lives in `cli/`.
"""

from __future__ import annotations

from swiftdeploy.audit.log import AuditLog

__all__ = ["AuditLog"]
