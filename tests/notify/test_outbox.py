"""The outbox: cursors persisted atomically in a 0600 file, new sinks at the trail's
end, bounded dead letters, a corrupt file refused in one line."""

from __future__ import annotations

import stat
import time
from pathlib import Path

import pytest

from swiftdeploy.audit.log import AuditLog
from swiftdeploy.errors import StateError
from swiftdeploy.notify.outbox import (
    DEAD_LETTERS_KEPT,
    DeadLetter,
    FileText,
    OutboxStore,
    standings,
    trail_end,
)


def letter(seq: int) -> DeadLetter:
    return DeadLetter(seq=seq, event_id=f"e{seq}", event_type="t", rollout_id="r",
                      attempts=3, error="HTTP 503", at=time.time())  # fmt: skip


def test_cursors_survive_a_restart_in_a_private_file(tmp_path: Path) -> None:
    store = OutboxStore(FileText(tmp_path))
    assert store.start(["a", "b"], end=7) == ["a", "b"]
    store.attempted("a", 2)
    store.delivered("b", 9)
    store.dead_lettered("a", letter(8))
    path = tmp_path / "outbox.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    again = OutboxStore(FileText(tmp_path))
    assert again.start(["a", "b", "c"], end=12) == ["c"]  # a new sink only
    a, b, c = (again.cursor(name) for name in "abc")
    assert (a.seq, a.attempts, [d.event_id for d in a.dead]) == (8, 0, ["e8"])
    assert (b.seq, b.delivered, c.seq) == (9, 1, 12)
    assert [(name, d.event_id) for name, d in again.unrecorded()] == [("a", "e8")]
    again.mark_recorded("a", "e8")
    assert OutboxStore(FileText(tmp_path)).unrecorded() == []
    assert not list(tmp_path.glob(".outbox.json.*"))  # no temporary left


def test_dead_letters_are_bounded_to_the_newest(tmp_path: Path) -> None:
    store = OutboxStore(FileText(tmp_path))
    store.start(["a"], end=0)
    for seq in range(1, DEAD_LETTERS_KEPT + 6):
        store.dead_lettered("a", letter(seq))
    dead = store.cursor("a").dead
    assert len(dead) == DEAD_LETTERS_KEPT
    assert dead[-1].seq == DEAD_LETTERS_KEPT + 5


def test_a_corrupt_outbox_is_one_clear_error(tmp_path: Path) -> None:
    (tmp_path / "outbox.json").write_text('{"sinks": {"a": {"seq": "x"}}}')
    with pytest.raises(StateError, match="the notifications outbox is corrupt") as caught:
        OutboxStore(FileText(tmp_path))
    assert "starts again at the trail's end" in (caught.value.hint or "")


def test_the_trails_end_and_standings(tmp_path: Path) -> None:
    trail = tmp_path / "history.jsonl"
    assert trail_end(trail) == 0
    log = AuditLog(trail, 10**7, command=["t"])
    for _ in range(3):
        log.append("command")
    assert trail_end(trail) == 3
    store = OutboxStore(FileText(tmp_path))
    store.start(["a"], end=1)
    shown = standings([("a", "slack"), ("b", "webhook")], store.outbox, {"a": 2})
    assert [(s.name, s.delivered_to, s.pending) for s in shown] == [("a", 1, 2), ("b", 0, 0)]
