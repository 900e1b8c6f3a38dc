"""nginx with Debian's lua module as the traffic router.

Routes live in a shared dict behind an admin server on a unix socket in the project's
0700 state directory, so no other local user can change them; every rendered config
passes `nginx -t` before it replaces the running one. When the CLI runs as root, the
workers that face clients run as an account of their own (traffic/worker_account.py).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
from importlib import resources
from pathlib import Path

import httpx
import jinja2

from swiftdeploy import proc
from swiftdeploy.durations import format_duration
from swiftdeploy.errors import BadInputError, TrafficError
from swiftdeploy.fsutil import atomic_write, private_dir
from swiftdeploy.manifest import Manifest
from swiftdeploy.probe import wait_for_ok
from swiftdeploy.proc import ProcessSpec
from swiftdeploy.traffic.base import RouterStatus, Routes
from swiftdeploy.traffic.worker_account import (
    TEMP_KINDS,
    WorkerAccount,
    ensure_worker_account,
)

NGINX_SEARCH_PATH = "/usr/sbin:/usr/local/sbin:/usr/bin"
ROUTER_LUA = "swiftdeploy_router.lua"
HEALTH_INTERVAL_S = 0.25
ADMIN_SOCKET = "admin.sock"
COOKIE_KEY = "cookie.key"
# How long a sticky pin holds: longer than a rollout usually runs, so a returning
# client keeps its track; a new rollout voids every pin anyway.
PIN_TTL_S = 24 * 3600
MAX_SOCKET_PATH = 100  # AF_UNIX paths stop at 108 bytes on Linux


def _template(name: str) -> str:
    return resources.files("swiftdeploy.traffic").joinpath("templates", name).read_text()


class NginxRouter:
    name = "nginx"

    def __init__(self, manifest: Manifest, state_dir: Path) -> None:
        self.manifest = manifest
        self.state_dir = state_dir
        self.nginx_dir = state_dir / "nginx"
        self.config_path = self.nginx_dir / "nginx.conf"
        self.routes_path = self.nginx_dir / "routes.json"
        self.admin_socket = self.nginx_dir / ADMIN_SOCKET
        if len(str(self.admin_socket)) > MAX_SOCKET_PATH:
            raise TrafficError(
                f"state directory path is too long for a unix socket: {self.admin_socket}",
                hint="move the project to a shorter path",
            )
        self.admin_url = "http://nginx"
        self._http = httpx.Client(
            timeout=2.0,
            trust_env=False,
            transport=httpx.HTTPTransport(uds=str(self.admin_socket)),
        )

    def render(self) -> str:
        traffic = self.manifest.traffic
        workers = self._worker_account()
        env = jinja2.Environment(autoescape=False, undefined=jinja2.StrictUndefined)  # noqa: S701 - nginx config, not HTML
        return env.from_string(_template("nginx.conf.j2")).render(
            workers=workers,
            temp_dir=workers.temp_root if workers else self.nginx_dir / "tmp",
            worker_processes=2,
            state_dir=self.state_dir,
            listen=traffic.listen,
            admin_socket=self.admin_socket,
            health_path=self.manifest.service.health,
            health_interval=HEALTH_INTERVAL_S,
            canary_header=traffic.canary_header,
            sticky_cookie=traffic.sticky_cookie,
            pin_ttl=PIN_TTL_S,
            track_header=traffic.track_header,
            cookie_key=self._cookie_key(),
            private_paths=traffic.private_paths,
        )

    def _worker_account(self) -> WorkerAccount | None:
        """Run as root, nginx drops its workers to an account nothing else uses; run as
        anyone else, the workers are the CLI's user, like every other process."""
        return ensure_worker_account() if os.geteuid() == 0 else None

    def _cookie_key(self) -> str:
        """The sticky cookie's HMAC key: made once, 0600 in the private state directory,
        so pins survive redeploys and no client can forge one."""
        path = self.nginx_dir / COOKIE_KEY
        if not path.exists():
            self._make_dirs()
            atomic_write(path, secrets.token_hex(32) + "\n")
        return path.read_text(encoding="utf-8").strip()

    def _argv(self, config: Path) -> list[str]:
        # Debian puts nginx in /usr/sbin, which a non-root PATH often lacks.
        nginx = shutil.which("nginx") or shutil.which("nginx", path=NGINX_SEARCH_PATH)
        if nginx is None:
            raise TrafficError(
                "nginx is not installed", hint="run `make setup` or apt-get install nginx"
            )
        return [
            nginx,
            "-p",
            str(self.nginx_dir),
            "-c",
            str(config),
            "-e",
            str(self.state_dir / "logs" / "nginx-error.log"),
        ]

    def check(self, text: str | None = None) -> None:
        """`nginx -t` on the rendered config, in a candidate file; raises with nginx's words."""
        self._make_dirs()
        candidate = self.nginx_dir / "nginx.conf.candidate"
        atomic_write(candidate, text if text is not None else self.render())
        try:
            outcome = proc.run([*self._argv(candidate), "-t", "-q"], timeout=30)
        finally:
            candidate.unlink(missing_ok=True)
        if outcome.code != 0:
            lines = [ln for ln in outcome.stderr.splitlines() if "emerg" in ln or "error" in ln]
            detail = (lines or outcome.stderr.splitlines() or ["unknown error"])[0]
            raise BadInputError(f"nginx rejected the rendered config: {detail}")

    def prepare(self) -> ProcessSpec:
        text = self.render()
        self.check(text)
        atomic_write(self.config_path, text)
        return ProcessSpec(
            name="nginx",
            argv=self._argv(self.config_path),
            env={},
            log_path=self.state_dir / "logs" / "nginx-supervisor.log",
            takeover={
                "pid_file": str(self.nginx_dir / "nginx.pid"),
                "name": "nginx",
                "unix_socket": str(self.admin_socket),
            },
        )

    def _make_dirs(self) -> None:
        private_dir(self.nginx_dir)
        private_dir(self.state_dir / "logs")
        if os.geteuid() != 0:  # root's workers have their own (worker_account.TEMP_ROOT)
            tmp = private_dir(self.nginx_dir / "tmp")
            for kind in TEMP_KINDS:
                private_dir(tmp / kind)
        atomic_write(self.nginx_dir / ROUTER_LUA, _template(ROUTER_LUA))
        if not self.routes_path.exists():
            atomic_write(self.routes_path, _routes_json(Routes()))

    def wait_ready(self, timeout: float) -> None:
        failure = wait_for_ok(self._http, f"{self.admin_url}/routes", timeout)
        if failure is None:
            return
        raise TrafficError(
            f"nginx admin endpoint {self.admin_url} did not answer within"
            f" {format_duration(timeout)} ({failure})",
            hint=f"see {self.state_dir / 'logs' / 'nginx-error.log'}",
        )

    def apply(self, routes: Routes) -> None:
        body = _routes_json(routes)
        atomic_write(self.routes_path, body)
        response = self._admin("PUT", "/routes", content=body)
        if response.status_code != 200:
            raise TrafficError(f"nginx refused the routes: {response.text.strip()}")

    def current(self) -> RouterStatus:
        try:
            data = self._http.get(f"{self.admin_url}/routes").json()
        except (httpx.HTTPError, ValueError) as exc:
            raise TrafficError(f"nginx admin endpoint unreachable: {exc}") from None
        return RouterStatus(
            routes=_routes_from_json(data["routes"]), down=tuple(data.get("down") or ())
        )

    def close(self) -> None:
        self._http.close()

    def read_metrics(self, track: str) -> str:
        """nginx's own per-track counters, as Prometheus text in the demo's metric names."""
        return self._get(f"/metrics/{track}").text

    def read_history(self, track: str, start: int, end: int) -> dict[str, object]:
        """One track's counts over the whole seconds [start, end), from nginx's memory."""
        response = self._get(f"/history/{track}", params={"from": start, "to": end})
        try:
            data = response.json()
        except ValueError:
            raise TrafficError("nginx history: not JSON") from None
        if not isinstance(data, dict):
            raise TrafficError("nginx history: not an object")
        return data

    def _get(self, path: str, params: dict[str, int] | None = None) -> httpx.Response:
        response = self._admin("GET", path, params=params)
        if response.status_code != 200:
            raise TrafficError(f"nginx admin {path}: HTTP {response.status_code}")
        return response

    def _admin(
        self,
        method: str,
        path: str,
        *,
        content: str | None = None,
        params: dict[str, int] | None = None,
    ) -> httpx.Response:
        """One request to nginx's admin endpoint, whatever its status."""
        try:
            return self._http.request(
                method, f"{self.admin_url}{path}", content=content, params=params
            )
        except httpx.HTTPError as exc:
            raise TrafficError(f"nginx admin endpoint unreachable: {exc}") from None


def _routes_json(routes: Routes) -> str:
    return json.dumps(
        {
            "weights": {"canary": routes.canary_weight, "stable": routes.stable_weight},
            "endpoints": {"stable": list(routes.stable), "canary": list(routes.canary)},
            "rollout": routes.rollout,
        }
    )


def _routes_from_json(data: dict[str, object]) -> Routes:
    weights = data.get("weights") or {}
    endpoints = data.get("endpoints") or {}
    assert isinstance(weights, dict)
    assert isinstance(endpoints, dict)
    return Routes(
        canary_weight=int(weights.get("canary", 0)),
        stable=tuple(endpoints.get("stable") or ()),
        canary=tuple(endpoints.get("canary") or ()),
        rollout=str(data.get("rollout") or ""),
    )
