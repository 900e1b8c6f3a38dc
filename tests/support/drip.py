"""A service whose /metrics never finishes: it sends one byte a second (for at most two
minutes). `python -m tests.support.drip --port N`; / and /healthz answer at once. It
plays a canary that stalls the controller by its metrics."""

from __future__ import annotations

import time

from tests.support.stubserver import QuietHandler, serve

DRIP_FOR_S = 120


class Handler(QuietHandler):
    def do_GET(self) -> None:
        if self.path != "/metrics":
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.end_headers()
        for _ in range(DRIP_FOR_S):
            self.wfile.write(b"#")
            self.wfile.flush()
            time.sleep(1)


def main() -> None:
    serve(Handler)


if __name__ == "__main__":
    main()
