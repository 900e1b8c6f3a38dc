"""The one way this package runs a command: argv list, no shell, (code, stdout, stderr)."""

from __future__ import annotations

import subprocess

from swiftdeploy.errors import PolicyEngineError


def run(argv: list[str], *, timeout: float, hint: str | None = None) -> tuple[int, str, str]:
    """Run argv and return (exit code, stdout, stderr); a missing program or a timeout
    is a PolicyEngineError. A non-zero exit is returned, not raised: callers read it."""
    try:
        completed = subprocess.run(
            argv, capture_output=True, text=True, timeout=timeout, check=False
        )
    except FileNotFoundError:
        raise PolicyEngineError(f"{argv[0]} not found", hint=hint) from None
    except OSError as exc:
        raise PolicyEngineError(f"cannot run {argv[0]}: {exc}", hint=hint) from None
    except subprocess.TimeoutExpired:
        raise PolicyEngineError(f"{' '.join(argv)} did not finish within {timeout:g}s") from None
    return completed.returncode, completed.stdout, completed.stderr
