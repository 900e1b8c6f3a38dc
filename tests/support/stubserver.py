"""The loopback HTTP servers tests run as replicas: `--port N [--version V]`, the argv a
manifest's command gives each replica."""

from __future__ import annotations

import argparse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def serve(handler: type[BaseHTTPRequestHandler]) -> None:
    """Serve `handler` on 127.0.0.1 until killed; its class gets `app_version`."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--version", default="v1")
    args = parser.parse_args()
    handler.app_version = args.version  # type: ignore[attr-defined]
    server = ThreadingHTTPServer(("127.0.0.1", args.port), handler)
    server.daemon_threads = True
    server.serve_forever()
