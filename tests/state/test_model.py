"""state.model: a state file written before a field was renamed still reads the same."""

from __future__ import annotations

import json
from pathlib import Path

from swiftdeploy.state.model import FileStateStore, Phase, State


def test_a_state_written_with_the_old_analysis_flag_still_auto_advances(tmp_path: Path) -> None:
    # Given a state.json from before the flag was renamed (`analysis`, now `auto_advance`)
    written = State(phase=Phase.PROGRESSING, canary_version="v2", step_index=0)
    old = json.loads(written.model_dump_json()) | {"analysis": True}
    del old["auto_advance"]
    (tmp_path / "state.json").write_text(json.dumps(old))
    store = FileStateStore(tmp_path)
    # When it is read
    state = store.load()
    # Then the rollout still advances by its tests, and is saved under the new name only
    assert state.auto_advance is True
    assert (state.phase, state.canary_version) == (Phase.PROGRESSING, "v2")
    store.save(state)
    saved = json.loads((tmp_path / "state.json").read_text())
    assert saved["auto_advance"] is True
    assert "analysis" not in saved


def test_a_canary_started_by_hand_does_not_auto_advance() -> None:
    assert State.model_validate({"analysis": False}).auto_advance is False
    assert State().auto_advance is False
