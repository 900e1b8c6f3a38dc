"""The persisted model: the project's state, its evidence ledger and the store that keeps them.
May import: the foundation only (errors, fsutil, stats): every layer reads the state.
"""

from __future__ import annotations

from swiftdeploy.state.model import (
    FileStateStore,
    LastLook,
    Phase,
    Replica,
    State,
    StateStore,
    Track,
)

__all__ = ["FileStateStore", "LastLook", "Phase", "Replica", "State", "StateStore", "Track"]
