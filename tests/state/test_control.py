"""The driver's files: requests taken in order, answered once, never acted on twice."""

from __future__ import annotations

import stat
from pathlib import Path

from swiftdeploy.state.control import Answer, ControlDir, DriverInfo


def test_requests_are_taken_in_the_order_they_were_made(tmp_path: Path) -> None:
    control = ControlDir(tmp_path / ".swiftdeploy")
    first = control.submit("pause", reason="dashboards")
    second = control.submit("weight", weight=30)
    assert [r.id for r in control.pending()] == [first.id, second.id]
    assert control.pending()[1].weight == 30
    assert first.requested_by  # who asked is always said


def test_only_the_owner_can_read_or_write_requests(tmp_path: Path) -> None:
    control = ControlDir(tmp_path / ".swiftdeploy")
    request = control.submit("abort")
    assert stat.S_IMODE(control.state_dir.stat().st_mode) == 0o700
    path = control.requests / f"{request.id}.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_an_answer_reaches_the_asker_once(tmp_path: Path) -> None:
    control = ControlDir(tmp_path / ".swiftdeploy")
    request = control.submit("promote")
    control.take(request)
    assert control.pending() == []
    control.answer(request, Answer(id=request.id, result="done", message="promoted"))
    answer = control.wait_answer(request, timeout_s=1)
    assert answer is not None
    assert answer.message == "promoted"
    assert control.wait_answer(request, timeout_s=0.2) is None
    assert control.interrupted() == []


def test_a_request_taken_by_a_driver_that_died_is_not_pending_again(tmp_path: Path) -> None:
    # Given a driver took `promote` and was killed before it answered
    control = ControlDir(tmp_path / ".swiftdeploy")
    request = control.submit("promote")
    control.take(request)
    # Then the next driver does not see it pending (it would skip a second step) but
    # finds it interrupted, to answer
    assert control.pending() == []
    assert [r.id for r in control.interrupted()] == [request.id]


def test_an_unreadable_request_is_dropped_not_blocking_the_queue(tmp_path: Path) -> None:
    control = ControlDir(tmp_path / ".swiftdeploy")
    control.submit("pause")
    (control.requests / "00000000000000000000-bad.json").write_text("{not json")
    assert [r.verb for r in control.pending()] == ["pause"]
    assert not (control.requests / "00000000000000000000-bad.json").exists()


def test_a_request_withdrawn_before_it_was_taken_is_gone(tmp_path: Path) -> None:
    control = ControlDir(tmp_path / ".swiftdeploy")
    request = control.submit("resume")
    assert control.withdraw(request)
    assert control.pending() == []
    control.take(control.submit("resume"))
    assert not control.withdraw(request)


def test_the_driver_record_round_trips_and_a_broken_one_reads_as_none(tmp_path: Path) -> None:
    control = ControlDir(tmp_path / ".swiftdeploy")
    assert control.driver() is None
    info = DriverInfo(pid=42, rollout_id="abc", started_at=1.0, first_started_at=1.0)
    control.save_driver(info)
    assert control.driver() == info
    control.driver_path.write_text("{")
    assert control.driver() is None
