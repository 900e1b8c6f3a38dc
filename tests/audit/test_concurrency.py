"""Writers in separate processes share one chain; a writer killed mid-append leaves at
most a torn tail, which verify reports and the next append refuses."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from swiftdeploy.audit.log import AuditLog
from swiftdeploy.audit.verify import verify
from swiftdeploy.errors import AuditError

WRITER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from swiftdeploy.audit.log import AuditLog

    path, worker, count, max_bytes, go = sys.argv[1:6]
    log = AuditLog(Path(path), int(max_bytes), ["not-in-any-record"])
    while not Path(go).exists():
        time.sleep(0.001)
    for i in range(int(count)):
        log.append("command", rollout_id=f"r-{worker}", worker=int(worker), i=i)
    """
)


def run_writers(path: Path, workers: int, count: int, max_bytes: int) -> None:
    go = path.parent / "go"
    path.parent.mkdir(parents=True, exist_ok=True)
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, str(path), str(w), str(count), str(max_bytes), str(go)],
            stderr=subprocess.PIPE,
            text=True,
        )
        for w in range(workers)
    ]
    time.sleep(0.5)  # let every writer start, so they all race from the same moment
    go.touch()
    for proc in procs:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err


def all_records(path: Path) -> list[dict[str, object]]:
    files = sorted(
        path.parent.glob(path.name + ".*[0-9]"), key=lambda p: int(p.name.rsplit(".", 1)[1])
    )
    return [json.loads(line) for f in [*files, path] for line in f.read_text().splitlines()]


def check_writers(path: Path, workers: int, count: int) -> None:
    result = verify(path)
    assert result.ok, result.lines()
    assert result.records == workers * count
    records = all_records(path)
    assert [r["seq"] for r in records] == list(range(1, workers * count + 1))
    for worker in range(workers):
        mine = [r["i"] for r in records if r["worker"] == worker]
        assert mine == list(range(count))  # all there, in each writer's own order
    pids = {r["actor"]["pid"] for r in records}  # type: ignore[index]
    assert len(pids) == workers


@pytest.mark.slow
def test_ten_processes_append_5000_records_to_one_valid_chain(trail_path: Path) -> None:
    # No time limit: speed is for benchmarks (a loaded machine took 98 s here once).
    run_writers(trail_path, workers=10, count=500, max_bytes=100_000_000)
    check_writers(trail_path, 10, 500)


def test_threads_of_one_process_share_the_chain(trail_path: Path) -> None:
    log = AuditLog(trail_path, 16_384, [])

    def write(worker: int) -> None:
        for i in range(100):
            log.append("command", worker=worker, i=i)

    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(write, range(4)))
    result = verify(trail_path)
    assert result.ok, result.lines()
    assert result.records == 400


def test_verify_while_writers_append_never_sees_a_torn_tail(trail_path: Path) -> None:
    log = AuditLog(trail_path, 10**9, [])
    log.append("command")
    go = trail_path.parent / "go"
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(trail_path), "0", "400", str(10**9), str(go)]
    )
    go.touch()
    try:
        while proc.poll() is None:
            result = verify(trail_path)
            assert result.ok, result.lines()
    finally:
        proc.wait(timeout=60)
    assert verify(trail_path).records == 401


@pytest.mark.slow
def test_concurrent_writers_across_rotations(trail_path: Path) -> None:
    run_writers(trail_path, workers=4, count=300, max_bytes=32_768)
    assert len(list(trail_path.parent.glob("history.jsonl.*[0-9]"))) >= 5
    check_writers(trail_path, 4, 300)


# Records of 16 MB make one write() take long enough for SIGKILL to land inside it:
# the kernel then stops the copy part-way and the file ends in a torn line.
PAD = 16_000_000
KILLED = textwrap.dedent(
    f"""
    import sys
    from pathlib import Path
    from swiftdeploy.audit.log import AuditLog

    log = AuditLog(Path(sys.argv[1]), 10**12, [])
    i = 0
    while True:
        log.append("command", i=i, pad="p" * {PAD})
        i += 1
    """
)


def kill_mid_write(path: Path, proc: subprocess.Popen[bytes], complete: int) -> None:
    """SIGKILL the writer once `complete` records are down, while a write is under way
    if that can be caught within 20 s (else wherever it is)."""
    deadline = time.monotonic() + 20
    fd: int | None = None
    try:
        while time.monotonic() < deadline:
            size = path.stat().st_size if path.exists() else 0
            if size < complete * PAD:
                continue
            fd = os.open(path, os.O_RDONLY) if fd is None else fd
            if os.pread(fd, 1, size - 1) != b"\n":
                break
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        if fd is not None:
            os.close(fd)


@pytest.mark.slow
def test_a_writer_killed_mid_append_leaves_at_most_a_torn_tail(trail_path: Path) -> None:
    trail_path.parent.mkdir(parents=True)
    proc = subprocess.Popen([sys.executable, "-c", KILLED, str(trail_path)])
    try:
        kill_mid_write(trail_path, proc, complete=3)
        assert proc.returncode == -signal.SIGKILL

        result = verify(trail_path)
        assert result.first_bad is None, result.lines()  # every complete record is intact
        data = trail_path.read_bytes()
        complete = data.count(b"\n")
        assert complete >= 3
        assert result.records == complete
        log = AuditLog(trail_path, 10**12, [])
        if data.endswith(b"\n"):  # the kill landed between two writes
            assert result.ok
            log.append("command", after="kill")
            assert verify(trail_path).records == complete + 1
        else:
            assert result.torn_tail is not None
            assert result.torn_tail.line == complete + 1
            assert "torn" in result.summary()
            with pytest.raises(AuditError, match="swiftdeploy audit verify"):
                log.append("command", after="kill")
            assert trail_path.read_bytes() == data
    finally:
        trail_path.unlink(missing_ok=True)  # 80 MB; not worth keeping in pytest's tmp


def test_a_truncated_last_line_is_reported_then_recovered_by_hand(trail_path: Path) -> None:
    """The reproducible torn tail: the start of a record, as a kill -9 inside its write()
    leaves it (after the last record the head counts)."""
    log = AuditLog(trail_path, 1_000_000, [])
    written = [log.append("command", i=i) for i in range(10)]
    start = trail_path.stat().st_size
    with trail_path.open("ab") as handle:
        handle.write(trail_path.read_bytes()[:17])

    result = verify(trail_path)
    assert result.torn_tail is not None
    assert result.first_bad is None
    assert not result.tampered
    assert (result.torn_tail.line, result.torn_tail.offset) == (11, start)
    assert result.records == 10
    assert result.head == written[9]["hash"]
    with pytest.raises(AuditError, match="torn record at line 11"):
        log.append("command", i=10)

    # What the hint says to do, after keeping a copy: cut the torn bytes off.
    os.truncate(trail_path, start)
    assert verify(trail_path).ok
    record = log.append("command", i=10)
    assert record["prev_hash"] == written[9]["hash"]
    assert verify(trail_path).records == 11
