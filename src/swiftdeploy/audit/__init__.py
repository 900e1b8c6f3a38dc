"""The tamper-evident audit trail: a hash-chained JSON-lines log and its verifier.
May import: policy (the Decision it records), state, manifest and the foundation; never
the review (`swiftdeploy.review`), which reads what the trail holds.

`recorder` is what the engine and commands write through (repeated holds held back
and written several to a record, `looks`), `log` appends the records (MAC'd, with a
head), `verify` checks them, `checkpoint` signs a head, `statecheck` refuses a state no
recorded transition reached; `vocabulary` declares the words the records use (actions,
phases, the phases a rollout ends in, failure rules) for the engine and the review.
"""

from __future__ import annotations

from swiftdeploy.audit.log import AuditLog

__all__ = ["AuditLog"]
