"""Where the external programs SwiftDeploy drives are found."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

OPA_ENV = "SWIFTDEPLOY_OPA"


def find_opa() -> str | None:
    """OPA from $SWIFTDEPLOY_OPA, PATH, or the `.tools/bin` that `make setup` builds it
    into, next to the venv this swiftdeploy runs from."""
    explicit = os.environ.get(OPA_ENV)
    if explicit:
        return explicit if Path(explicit).is_file() else None
    on_path = shutil.which("opa")
    if on_path:
        return on_path
    # sys.executable is .venv/bin/python; not resolved, or it would leave the venv.
    built = Path(sys.executable).parent.parent.parent / ".tools" / "bin" / "opa"
    return str(built) if built.is_file() else None
