"""Slow HTTP clients on raw sockets, and a fast service for them to be slow against.

`send_slowly` sends the first byte of a GET (or a POST's body), waits, then sends the
rest (a slow mobile client, or a slowloris); `read_slowly` reads a response a byte at
a time with a small receive buffer (a slow reader). Both are bounded (a few seconds)
and speak only to 127.0.0.1.

`python -m tests.support.slowclient --port N --version V` is the service: GET `/` and
`/healthz` and any POST answer small JSON at once; GET `/big` answers BIG_BYTES, more
than nginx's response buffers and the loopback socket buffers between nginx and a slow
reader hold.
"""

from __future__ import annotations

import json
import socket
import time
from dataclasses import dataclass

from tests.support.stubserver import QuietHandler, serve

BIG_BYTES = 16 * 1024 * 1024
TIMEOUT_S = 10.0
_BIG = b"x" * BIG_BYTES


@dataclass(frozen=True)
class Reply:
    status: int
    body_bytes: int  # bytes after the header
    content_length: int | None


def _request(host: str, path: str, body: bytes | None = None) -> bytes:
    if body is None:
        return f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode()
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n"
        f"Content-Type: application/octet-stream\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


def send_slowly(
    port: int, path: str = "/", pause_s: float = 1.5, body: bytes | None = None
) -> Reply:
    """Send the first byte of a GET (or, with a body, a POST's header and the first byte
    of its body), wait `pause_s`, send the rest, then read the reply at full speed."""
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT_S) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        request = _request("127.0.0.1", path, body)
        split = 1 if body is None else len(request) - len(body) + 1
        sock.sendall(request[:split])
        time.sleep(pause_s)
        sock.sendall(request[split:])
        return _reply(_read_to_end(sock, bytearray()))


def read_slowly(port: int, path: str, slow_bytes: int = 8, pause_s: float = 0.2) -> Reply:
    """GET `path` with a 4 KiB receive buffer, read its first `slow_bytes` bytes one per
    `pause_s`, then the rest at full speed."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connect: the window
        sock.settimeout(TIMEOUT_S)
        sock.connect(("127.0.0.1", port))
        sock.sendall(_request("127.0.0.1", path))
        received = bytearray()
        for _ in range(slow_bytes):
            received += sock.recv(1)
            time.sleep(pause_s)
        return _reply(_read_to_end(sock, received))


def _read_to_end(sock: socket.socket, received: bytearray) -> bytes:
    deadline = time.monotonic() + TIMEOUT_S
    while time.monotonic() < deadline:
        chunk = sock.recv(1 << 16)
        if not chunk:
            return bytes(received)
        received += chunk
    raise TimeoutError("the response did not end")


def _reply(raw: bytes) -> Reply:
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    length = None
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-length":
            length = int(value)
    return Reply(status=status, body_bytes=len(body), content_length=length)


class Handler(QuietHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # header and body go in two writes: no 40 ms stall

    def do_GET(self) -> None:
        if self.path == "/big":
            body, kind = _BIG, "application/octet-stream"
        else:
            body, kind = json.dumps({"version": self.app_version}).encode(), "application/json"
        self.send_response(200)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-App-Version", self.app_version)
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:
        received = len(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
        body = json.dumps({"version": self.app_version, "received": received}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-App-Version", self.app_version)
        self.end_headers()
        self.wfile.write(body)


def main() -> None:
    serve(Handler)


if __name__ == "__main__":
    main()
