"""The judge's HTTP face: the routes Argo Rollouts' `web` metric provider and Flagger's
webhooks call, with their contracts exactly.

The standard library's ThreadingHTTPServer: a few routes called about once a
minute per rollout need no framework, and the judge's image (the driver's) then
carries nothing more. Every call: a bearer token first (401 and nothing touched
without one), a bounded body read under a socket timeout, JSON out, no traceback to
the caller (a one-line error; the log has the exception's type), one log line.

- `GET /v1/argo/<namespace>/<rollout>?revision=&stable=&canary=[&step=][&weight=]`:
  200 with the answer whatever the verdict (Argo's `successCondition` /
  `failureCondition` read it; a hold matches neither: Inconclusive).
- `POST /v1/flagger/confirm-traffic-increase`, `/v1/flagger/confirm-promotion`: 200 on
  promote, else 403 (Flagger waits and asks again).
- `POST /v1/flagger/rollout`: 200 unless the verdict is rollback (403): Flagger's
  failed-checks counter moves only on evidence of harm.
- `GET /healthz` (the process answers), `GET /readyz` (Prometheus and the trail).
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Mapping
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from swiftdeploy.errors import SwiftDeployError
from swiftdeploy.judge.judgement import Call
from swiftdeploy.judge.service import CALLER_TOKEN_KEY, Judge, caller_of

_DNS_LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
_DNS_NAME = re.compile(r"^[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?$")
_TOKEN = re.compile(r"^[A-Za-z0-9._-]{1,128}$")  # a revision, hash, checksum or step
_ARGO = re.compile(r"^/v1/argo/(?P<namespace>[^/]+)/(?P<name>[^/]+)$")
FLAGGER_HOOKS = ("confirm-traffic-increase", "confirm-promotion", "rollout")
# Flagger's webhook payload (fluxcd/flagger pkg/apis/flagger/v1beta1/canary.go,
# CanaryWebhookPayload; docs/gitbook/usage/webhooks.md): name, namespace, phase,
# checksum (of the canary's tracked configs and spec: one per revision) and metadata
# (a map of strings from the Canary's webhook spec). Unknown keys are ignored.


class BadRequest(Exception):
    def __init__(self, status: HTTPStatus, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def argo_call(namespace: str, name: str, query: Mapping[str, list[str]], caller: str) -> Call:
    """A call from Argo's web provider: the rollout from the path, the rest as arguments."""
    _check(_DNS_LABEL, namespace, "namespace")
    _check(_DNS_NAME, name, "rollout")
    stable, canary = _arg(query, "stable"), _arg(query, "canary")
    if stable is None or canary is None:
        raise BadRequest(
            HTTPStatus.BAD_REQUEST,
            "stable and canary (the pod-template hashes) are required: see docs/judge.md",
        )
    revision = _arg(query, "revision") or canary  # a new revision has a new canary hash
    return Call(
        controller="argo",
        namespace=namespace,
        name=name,
        revision=revision,
        stable=stable,
        canary=canary,
        caller=caller,
        step=_arg(query, "step"),
        weight=_weight(_arg(query, "weight")),
    )


def flagger_call(hook: str, payload: object, caller: str) -> Call:
    """A call from one of Flagger's webhooks, from its documented payload."""
    if not isinstance(payload, dict):
        raise BadRequest(HTTPStatus.BAD_REQUEST, "the body must be Flagger's JSON payload")
    name, namespace = payload.get("name"), payload.get("namespace")
    if not isinstance(name, str) or not isinstance(namespace, str):
        raise BadRequest(HTTPStatus.BAD_REQUEST, "the payload needs name and namespace")
    _check(_DNS_NAME, name, "name")
    _check(_DNS_LABEL, namespace, "namespace")
    checksum = payload.get("checksum")
    revision = checksum if isinstance(checksum, str) and checksum else "-"
    _check(_TOKEN, revision, "checksum")
    metadata = payload.get("metadata") or {}
    if not isinstance(metadata, dict):
        raise BadRequest(HTTPStatus.BAD_REQUEST, "metadata must be a map of strings")
    weight = metadata.get("weight")
    return Call(
        controller="flagger",
        namespace=namespace,
        name=name,
        revision=revision,
        stable=_workload(metadata.get("primary"), f"{name}-primary"),
        canary=_workload(metadata.get("canary"), name),
        caller=caller,
        weight=_weight(weight if isinstance(weight, str) else None),
        hook=hook,
    )


def flagger_status(hook: str, verdict: str) -> HTTPStatus:
    if hook == "rollout":
        return HTTPStatus.FORBIDDEN if verdict == "rollback" else HTTPStatus.OK
    return HTTPStatus.OK if verdict == "promote" else HTTPStatus.FORBIDDEN


def _workload(value: object, default: str) -> str:
    workload = value if isinstance(value, str) and value else default
    _check(_DNS_NAME, workload, "workload")
    return workload


def _arg(query: Mapping[str, list[str]], name: str) -> str | None:
    values = query.get(name)
    if not values or not values[-1]:
        return None
    _check(_TOKEN, values[-1], name)
    return values[-1]


def _weight(value: str | None) -> int | None:
    if value is None:
        return None
    if not value.isdigit() or not 0 <= int(value) <= 100:
        raise BadRequest(HTTPStatus.BAD_REQUEST, "weight must be a whole number from 0 to 100")
    return int(value)


def _check(pattern: re.Pattern[str], value: str, what: str) -> None:
    if not pattern.match(value):
        raise BadRequest(HTTPStatus.BAD_REQUEST, f"{what} {value[:80]!r} is not valid")


class JudgeServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 64

    def handle_error(self, request: object, client_address: object) -> None:
        return None  # a caller that timed out or left: nothing to tell, no traceback


def serve(
    judge: Judge,
    tokens: Mapping[str, str],
    log: Callable[[str], None],
    host: str,
    port: int,
) -> JudgeServer:
    """A server bound to host:port (port 0: any free one); `serve_forever` runs it."""
    handler = _handler(judge, dict(tokens), log)
    return JudgeServer((host, port), handler)


def _handler(
    judge: Judge, tokens: dict[str, str], log: Callable[[str], None]
) -> type[BaseHTTPRequestHandler]:
    config = judge.config

    class Handler(BaseHTTPRequestHandler):
        server_version = "swiftdeploy-judge"
        sys_version = ""
        protocol_version = "HTTP/1.1"
        timeout = config.request_timeout  # each read and write on the socket

        def do_GET(self) -> None:
            self._serve("GET")

        def do_POST(self) -> None:
            self._serve("POST")

        def log_message(self, format: str, *args: Any) -> None:
            return None  # one line per call, written by _serve

        def _serve(self, method: str) -> None:
            started = time.monotonic()
            who, note = "-", ""
            try:
                status, body, who = self._route(method)
                note = str(body.get("verdict") or body.get("error") or "")
            except BadRequest as exc:
                status, body = exc.status, {"error": exc.message}
                note = exc.message
            except SwiftDeployError as exc:  # the trail, the store: fail closed, say why
                status, body = HTTPStatus.INTERNAL_SERVER_ERROR, {"error": exc.one_line()}
                note = exc.one_line()
            except Exception as exc:
                status = HTTPStatus.INTERNAL_SERVER_ERROR
                body = {"error": "internal error; see the judge's log"}
                note = f"internal error: {type(exc).__name__}: {exc}"
            self._send(status, body)
            elapsed = (time.monotonic() - started) * 1000
            path = urlsplit(self.path).path
            peer = self.client_address[0]
            log(f"{peer} {who} {method} {path} {int(status)} {elapsed:.0f}ms {note}")

        def _route(self, method: str) -> tuple[HTTPStatus, dict[str, Any], str]:
            parts = urlsplit(self.path)
            path = parts.path
            if path in ("/healthz", "/readyz"):
                if method != "GET":
                    raise BadRequest(HTTPStatus.METHOD_NOT_ALLOWED, "use GET")
                if path == "/healthz":
                    return HTTPStatus.OK, {"status": "ok"}, "-"
                ready, why = judge.ready()
                status = HTTPStatus.OK if ready else HTTPStatus.SERVICE_UNAVAILABLE
                return status, {"status": why}, "-"
            argo = _ARGO.match(path)
            hook = path.removeprefix("/v1/flagger/") if path.startswith("/v1/flagger/") else None
            if argo is None and hook not in FLAGGER_HOOKS:
                raise BadRequest(HTTPStatus.NOT_FOUND, f"no route {path[:80]!r}; see docs/judge.md")
            if argo is not None:
                if method != "GET":
                    raise BadRequest(HTTPStatus.METHOD_NOT_ALLOWED, "Argo's web provider uses GET")
                caller = self._caller(None)
                call = argo_call(argo["namespace"], argo["name"], parse_qs(parts.query), caller)
                answer = judge.look(call)
                return HTTPStatus.OK, answer.as_json(), caller
            assert hook is not None
            if method != "POST":
                raise BadRequest(HTTPStatus.METHOD_NOT_ALLOWED, "Flagger's webhooks POST")
            payload = self._json_body()
            caller = self._caller(payload)
            answer = judge.look(flagger_call(hook, payload, caller))
            return flagger_status(hook, answer.verdict), answer.as_json(), caller

        def _caller(self, payload: object) -> str:
            """The caller by its bearer token (Flagger cannot send headers: its
            webhook's metadata.token is read too). None valid: 401, nothing touched."""
            header = self.headers.get("Authorization", "")
            scheme, _, presented = header.partition(" ")
            token: str | None = presented.strip() if scheme.lower() == "bearer" else None
            if not token and isinstance(payload, dict):
                metadata = payload.get("metadata")
                if isinstance(metadata, dict) and isinstance(metadata.get(CALLER_TOKEN_KEY), str):
                    token = metadata[CALLER_TOKEN_KEY]
            caller = caller_of(tokens, token)
            if caller is None:
                raise BadRequest(HTTPStatus.UNAUTHORIZED, "a valid bearer token is required")
            return caller

        def _json_body(self) -> object:
            if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
                raise BadRequest(HTTPStatus.LENGTH_REQUIRED, "send Content-Length, not chunks")
            length = self.headers.get("Content-Length")
            if length is None or not length.isdigit():
                raise BadRequest(HTTPStatus.LENGTH_REQUIRED, "Content-Length is required")
            if int(length) > config.max_body_bytes:
                self.close_connection = True  # the rest of the body is not read
                raise BadRequest(
                    HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                    f"the body is more than {config.max_body_bytes} bytes",
                )
            raw = self.rfile.read(int(length))
            try:
                return json.loads(raw)
            except ValueError:
                raise BadRequest(HTTPStatus.BAD_REQUEST, "the body is not JSON") from None

        def _send(self, status: HTTPStatus, body: Mapping[str, Any]) -> None:
            try:
                data = (json.dumps(body, allow_nan=False, default=str) + "\n").encode()
            except ValueError:  # a number JSON cannot carry: say so rather than send it
                status, data = HTTPStatus.INTERNAL_SERVER_ERROR, b'{"error": "unencodable"}\n'
            try:
                self.send_response(int(status))
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.send_header("Cache-Control", "no-store")
                if status == HTTPStatus.UNAUTHORIZED:
                    self.send_header("WWW-Authenticate", 'Bearer realm="swiftdeploy-judge"')
                if self.close_connection:
                    self.send_header("Connection", "close")
                self.end_headers()
                self.wfile.write(data)
            except OSError:
                self.close_connection = True  # the caller left

    return Handler
