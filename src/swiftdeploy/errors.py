"""One error hierarchy; the CLI's single handler maps each class to an exit code.

Exit codes (documented in README.md):
  0 ok, 1 operational error, 2 bad input (usage or manifest),
  3 denied by policy / rolled back, 4 inconclusive / held, 130 interrupted.
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0
    OPERATIONAL = 1
    BAD_INPUT = 2
    DENIED = 3
    HELD = 4
    INTERRUPTED = 130


class SwiftDeployError(Exception):
    """Base class: a message a user can act on, in one line."""

    exit_code: ExitCode = ExitCode.OPERATIONAL

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def one_line(self) -> str:
        text = f"{self.message} ({self.hint})" if self.hint else self.message
        # One line whatever a message quotes (a path or a value may hold a newline).
        return text.replace("\r", "\\r").replace("\n", "\\n")


class BadInputError(SwiftDeployError):
    """The user's input (arguments or manifest) is wrong; nothing was started."""

    exit_code = ExitCode.BAD_INPUT


class ManifestError(BadInputError):
    """The manifest failed to load or validate."""


class OperationalError(SwiftDeployError):
    """Something outside the user's input failed: a process, a port, a service."""


class CommandFailedError(OperationalError):
    """A subprocess exited non-zero."""


class RuntimeProcessError(OperationalError):
    """The local runtime could not start, stop or health-check a process."""


class TrafficError(OperationalError):
    """The traffic router refused a config or did not answer."""


class MetricsProviderError(OperationalError):
    """A metrics source could not be read: down, refused, or answered garbage."""


class LockedError(OperationalError):
    """Another SwiftDeploy process holds the project lock."""


class TransientError(OperationalError):
    """A dependency that is expected back (an API server restarting, a 429 or 5xx): a
    driver holds and retries with backoff rather than giving up the rollout."""


class StateError(OperationalError):
    """The persisted state does not allow this action now."""


class PolicyDeniedError(SwiftDeployError):
    """A policy gate denied the action."""

    exit_code = ExitCode.DENIED


class RolledBackError(SwiftDeployError):
    """The rollout was rolled back."""

    exit_code = ExitCode.DENIED


class HeldError(SwiftDeployError):
    """Not enough evidence to decide before the limit: held."""

    exit_code = ExitCode.HELD


class PolicyEngineError(OperationalError):
    """A policy engine could not be started or asked (decisions themselves fail closed)."""


class AuditError(OperationalError):
    """The audit trail could not be written or read; an action it should record was not taken."""


class AuditTamperedError(AuditError):
    """`audit verify` found the hash chain broken, a torn record, or a missing anchor."""
