"""The loopback HTTP servers tests run as replicas: `--port N [--version V]`, the argv a
manifest's command gives each replica."""

from __future__ import annotations

import argparse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class QuietHandler(BaseHTTPRequestHandler):
    """A handler that logs nothing (a replica's stderr is not the test's), with the
    version `serve` was given."""

    app_version = "v1"

    def log_message(self, format: str, *args: object) -> None:
        return None


def serve(handler: type[QuietHandler]) -> None:
    """Serve `handler` on 127.0.0.1 until killed, with `app_version` from --version."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--version", default="v1")
    args = parser.parse_args()
    handler.app_version = args.version
    server = ThreadingHTTPServer(("127.0.0.1", args.port), handler)
    server.daemon_threads = True
    server.serve_forever()
