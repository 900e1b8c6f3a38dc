"""What of the cluster's trail needs no control plane: a snapshot of its ConfigMaps
(segments, tail, head) copied into a local trail that the file checks verify. (Reading
and writing the ConfigMaps, the driver's restore and the operators' checks, on a real
control plane: tests/runtime/kubernetes/test_trail.py.)"""

from __future__ import annotations

from pathlib import Path

import pytest

from swiftdeploy.audit.head import head_path
from swiftdeploy.audit.keys import KeyStore
from swiftdeploy.audit.log import AuditLog
from swiftdeploy.audit.verify import verify
from swiftdeploy.commands.cluster_trail import TRAIL, _write_copy
from swiftdeploy.runtime.kubernetes.trail import Segment, Snapshot, Tail

pytestmark = pytest.mark.usefixtures("fresh_audit_keys")


def written(tmp_path: Path, n: int) -> tuple[list[bytes], str]:
    """A trail of `n` records as the driver writes it: its lines and its head file."""
    path = tmp_path / "driver" / TRAIL
    log = AuditLog(path, 10_000_000, [], command=["swiftdeploy", "test"])
    for index in range(n):
        log.append("transition", event="step", rollout_id="r1", phase_before="progressing",
                   phase_after="progressing", step_index=index)  # fmt: skip
    return path.read_bytes().splitlines(keepends=True), head_path(path).read_text()


def snapshot(lines: list[bytes], head: str, sealed: int, tail_from: int) -> Snapshot:
    """The first `sealed` lines in a segment, the tail from line `tail_from` on."""
    segment = Segment("seg-1", 1, b"".join(lines[:sealed]), None)
    tail = Tail(b"".join(lines[tail_from:]), head, None, "1")
    return Snapshot(segments=[segment] if sealed else [], tail=tail)


def test_a_segment_and_the_tail_are_copied_as_one_trail_that_verifies(tmp_path: Path) -> None:
    lines, head = written(tmp_path, 6)
    path = _write_copy(snapshot(lines, head, sealed=4, tail_from=4), tmp_path / "copy")
    assert path.with_name(f"{TRAIL}.1").read_bytes() == b"".join(lines[:4])
    assert path.read_bytes() == b"".join(lines[4:])
    result = verify(path, keys=KeyStore.from_environment())
    assert (result.ok, result.records) == (True, 6), result.summary()


def test_a_tail_still_holding_sealed_records_loses_only_those_copies(tmp_path: Path) -> None:
    # Given a driver stopped after sealing a segment, before writing the shorter tail
    lines, head = written(tmp_path, 6)
    path = _write_copy(snapshot(lines, head, sealed=4, tail_from=2), tmp_path / "copy")
    # Then the copy holds each record once
    assert path.read_bytes() == b"".join(lines[4:])
    assert verify(path, keys=KeyStore.from_environment()).records == 6


def test_a_copy_follows_the_cluster_and_rewrites_only_what_changed(tmp_path: Path) -> None:
    lines, head = written(tmp_path, 6)
    directory = tmp_path / "copy"
    path = _write_copy(snapshot(lines, head, sealed=4, tail_from=4), directory)
    segment = path.with_name(f"{TRAIL}.1")
    before = segment.stat().st_ino
    # When the tail changes, the segment's file is left as it was (a reader keeps it open)
    _write_copy(snapshot(lines, head, sealed=4, tail_from=3), directory)
    assert segment.stat().st_ino == before
    # And when the cluster no longer has the segment, neither has the copy: verify then
    # sees the chain start in the middle, as it is in the cluster
    _write_copy(snapshot(lines, head, sealed=0, tail_from=4), directory)
    assert not segment.exists()
    assert path.read_bytes() == b"".join(lines[4:])
    assert not verify(path, keys=KeyStore.from_environment()).ok
