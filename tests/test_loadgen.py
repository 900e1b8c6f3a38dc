"""Bounded load with hey: it never outlives the process that started it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import ThreadingHTTPServer
from pathlib import Path
from threading import Thread

import pytest

from swiftdeploy.errors import CommandFailedError
from swiftdeploy.loadgen import LoadRun
from swiftdeploy.proc import pid_alive
from tests.conftest import wait_for
from tests.support.stubserver import QuietHandler


class _Ok(QuietHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()


@contextmanager
def serving() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Ok)
    server.daemon_threads = True
    Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        if int(stat[stat.rindex(")") + 2 :].split()[1]) == pid:
            found.append(int(entry.name))
    return found


def test_hey_dies_with_the_process_that_started_it() -> None:
    # Given a process (a rollout driver, say) running a 10-minute load against loopback
    with serving() as url:
        script = textwrap.dedent(f"""
            import time
            from swiftdeploy.loadgen import LoadRun
            run = LoadRun({url!r}, seconds=600, connections=1, rate_per_connection=5)
            print("started", flush=True)
            time.sleep(600)
        """)
        starter = subprocess.Popen(
            [sys.executable, "-c", script], stdout=subprocess.PIPE, text=True
        )
        try:
            assert starter.stdout is not None
            assert starter.stdout.readline().strip() == "started"
            wait_for(lambda: bool(_children(starter.pid)), what="hey to start")
            [hey] = _children(starter.pid)
            # When it is killed with SIGKILL (no cleanup of its own runs)
            os.kill(starter.pid, signal.SIGKILL)
            starter.wait(timeout=10)
            # Then hey goes too, rather than loading the service for ten more minutes
            wait_for(lambda: not pid_alive(hey), timeout=10, what="hey to stop")
        finally:
            if starter.poll() is None:
                starter.kill()
            starter.communicate()


def test_a_load_that_died_says_how() -> None:
    # Given a load running against loopback, killed by a signal it does not handle
    with serving() as url:
        run = LoadRun(url, seconds=60, connections=1, rate_per_connection=5)
        try:
            run._process.send_signal(signal.SIGTERM)
            # Then waiting for it says which signal, rather than an empty "hey failed:"
            with pytest.raises(CommandFailedError, match=r"^hey was killed by SIGTERM$"):
                run.wait()
        finally:
            run.stop()
