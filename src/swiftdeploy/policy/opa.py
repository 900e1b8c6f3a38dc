"""The OPA engine: a real Open Policy Agent server asked over its REST API.

`POST /v1/data/<package path>/decision` with `{"input": ...}` on one persistent
httpx.Client (keep-alive). OPA returns a `decision_id` when decision logging is
on (`--set decision_logs.console=true`, which `opa_server_argv` sets), and we keep
it so the audit trail can point at OPA's own log line.

Also here: the argv for a local `opa run --server`, a small supervisor for that
process (`OpaServer`, used by tests, the benchmark and a CLI without policy.opa.url),
and `opa_check`, which runs `opa check --format json` for compile problems.
"""

from __future__ import annotations

import json
import subprocess
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import IO, Any

import httpx

from swiftdeploy import proc
from swiftdeploy.durations import format_duration
from swiftdeploy.errors import BadInputError, PolicyEngineError
from swiftdeploy.policy.base import (
    COMPILE_ERROR,
    DEFAULT_TIMEOUT,
    ENGINE_ERROR,
    ENGINE_UNREACHABLE,
    INVALID_INPUT,
    MALFORMED_RESULT,
    Decision,
    Evaluation,
    InvalidInputError,
    canonical_json,
    decision_path,
)
from swiftdeploy.ports import free_port

LOOPBACK = "127.0.0.1"
UNIX = "unix://"


class OpaEngine:
    """Asks an OPA server; every failure to get an answer is a fail-closed Decision."""

    name = "opa"

    def __init__(
        self,
        url: str,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        directory: Path | None = None,
        opa_binary: str = "opa",
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self._url = _checked_url(url)
        self._timeout = timeout
        self._directory = directory
        self._opa_binary = opa_binary
        if transport is None and self._url.startswith(UNIX):
            # The project's own OPA listens on a unix socket in its 0700 state directory.
            transport = httpx.HTTPTransport(uds=self._url.removeprefix(UNIX))
        # trust_env=False: policy traffic never goes through an HTTP(S)_PROXY.
        self._client = httpx.Client(
            base_url="http://opa" if self._url.startswith(UNIX) else self._url,
            timeout=httpx.Timeout(timeout),
            transport=transport,
            trust_env=False,
            headers={"Content-Type": "application/json"},
        )

    @property
    def url(self) -> str:
        return self._url

    def decide(self, package: str, input: Mapping[str, Any]) -> Decision:
        call = Evaluation(self.name, package)
        path = f"/v1/data/{decision_path(package)}"
        try:
            body = f'{{"input":{canonical_json(input)}}}'.encode()
        except InvalidInputError as exc:
            return call.fail(INVALID_INPUT, f"policy input is not valid: {exc}")
        try:
            response = self._client.post(path, content=body)
        except httpx.TimeoutException:
            message = (
                f"policy engine unreachable: OPA at {self._url} did not answer "
                f"within {format_duration(self._timeout)}"
            )
            return call.fail(ENGINE_UNREACHABLE, message)
        except httpx.HTTPError as exc:
            message = f"policy engine unreachable: OPA at {self._url} ({type(exc).__name__}: {exc})"
            return call.fail(ENGINE_UNREACHABLE, message)
        return self._read(call, response)

    def check(self) -> list[str]:
        """`opa check` on the policy directory (the one the server was started with)."""
        if self._directory is None:
            return []
        return opa_check(self._directory, opa_binary=self._opa_binary)

    def close(self) -> None:
        self._client.close()

    def _read(self, call: Evaluation, response: httpx.Response) -> Decision:
        try:
            document = response.json()
        except ValueError:
            document = None
        if response.status_code != httpx.codes.OK:
            return self._server_error(call, response, document)
        if not isinstance(document, dict):
            message = "policy returned a malformed decision: OPA's response is not a JSON object"
            return call.fail(MALFORMED_RESULT, message)
        decision_id = document.get("decision_id")
        return call.decision(
            document.get("result"), decision_id if isinstance(decision_id, str) else None
        )

    def _server_error(
        self, call: Evaluation, response: httpx.Response, document: object
    ) -> Decision:
        code = document.get("code") if isinstance(document, dict) else None
        detail = document.get("message") if isinstance(document, dict) else None
        rule = COMPILE_ERROR if code == "rego_compile_error" else ENGINE_ERROR
        message = (
            f"policy evaluation failed: OPA answered HTTP {response.status_code}"
            f" {code or ''}: {detail or response.text[:200]}"
        )
        return call.fail(rule, message)


def _checked_url(url: str) -> str:
    if url.startswith(UNIX) and url.removeprefix(UNIX).startswith("/"):
        return url
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL as exc:
        raise BadInputError(f"policy.opa.url {url!r} is not a URL: {exc}") from None
    if parsed.scheme not in {"http", "https"} or not parsed.host:
        raise BadInputError(
            f"policy.opa.url {url!r} must be http(s)://HOST:PORT",
            hint="for example http://127.0.0.1:8181",
        )
    return url.rstrip("/")


# --- running OPA locally --------------------------------------------------------------


def opa_server_argv(
    directory: Path,
    listen: int | Path,
    *,
    opa_binary: str = "opa",
    host: str = LOOPBACK,
    decision_logs: bool = True,
) -> list[str]:
    """argv for `opa run --server` on the policy directory, listening on host:port, or
    (a Path) on a unix socket readable and writable by its owner only.

    Test files are not loaded (as in the embedded engine), telemetry is off (no
    traffic leaves the host), and decision logs go to the console so OPA returns a
    decision_id with every answer.
    """
    if isinstance(listen, Path):
        address = ["--addr", f"{UNIX}{listen}", "--unix-socket-perm", "600"]
    elif 1 <= listen <= 65535:
        address = ["--addr", f"{host}:{listen}"]
    else:
        raise BadInputError(f"port {listen} is outside 1-65535")
    argv = [
        opa_binary,
        "run",
        "--server",
        *address,
        "--disable-telemetry",
        "--ignore",
        "*_test.rego",
        "--log-level",
        "error",
        "--shutdown-grace-period",
        "1",
    ]
    if decision_logs:
        argv += ["--set", "decision_logs.console=true"]
    # An absolute path can never be read as a flag, whatever the directory is called.
    argv.append(str(directory.resolve()))
    return argv


class OpaServer:
    """A local `opa run --server` child process; `with OpaServer(dir) as url: ...`."""

    def __init__(
        self,
        directory: Path,
        *,
        opa_binary: str = "opa",
        port: int | None = None,
        log_path: Path | None = None,
        startup_timeout: float = 10.0,
    ) -> None:
        self.directory = directory
        self.opa_binary = opa_binary
        self.port = port or free_port()
        self.log_path = log_path
        self.startup_timeout = startup_timeout
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self) -> str:
        """Start OPA and wait for /health; raises PolicyEngineError with OPA's own words."""
        if self.running:
            return self.url
        argv = opa_server_argv(self.directory, self.port, opa_binary=self.opa_binary)
        # Decision logs can be large: they go to a file, never to an unread pipe. The
        # file outlives this method (it is read on failure and closed by stop()).
        self._log = (
            self.log_path.open("a+b") if self.log_path else tempfile.TemporaryFile()  # noqa: SIM115
        )
        try:
            self._process = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT
            )
        except OSError as exc:
            self._close_log()
            raise PolicyEngineError(
                f"cannot run {self.opa_binary}: {exc}", hint="run `make setup` to install OPA"
            ) from None
        self._wait_healthy()
        return self.url

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=5)
        self._close_log()

    def __enter__(self) -> str:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def _wait_healthy(self) -> None:
        deadline = time.monotonic() + self.startup_timeout
        with httpx.Client(base_url=self.url, timeout=1.0, trust_env=False) as client:
            while time.monotonic() < deadline:
                if self._process is None or self._process.poll() is not None:
                    output = self._log_tail()
                    self.stop()
                    raise PolicyEngineError(f"OPA exited while starting: {output}")
                try:
                    if client.get("/health").status_code == httpx.codes.OK:
                        return
                except httpx.HTTPError:
                    pass
                time.sleep(0.05)
        self.stop()
        raise PolicyEngineError(
            f"OPA did not become healthy on {self.url}"
            f" within {format_duration(self.startup_timeout)}"
        )

    def _log_tail(self) -> str:
        if self._log is None:
            return "(no output)"
        self._log.flush()
        self._log.seek(0)
        text = self._log.read().decode("utf-8", "replace").strip()
        return " ".join(text.splitlines()[-5:])[:1000] or "(no output)"

    def _close_log(self) -> None:
        log, self._log = self._log, None
        if log is not None:
            log.close()


# --- opa check --------------------------------------------------------------------------


def opa_check(directory: Path, *, opa_binary: str = "opa", timeout: float = 60.0) -> list[str]:
    """Compile problems from `opa check --format json`, each "file:line: message"."""
    done = proc.run(
        [opa_binary, "check", "--format", "json", str(directory)],
        timeout=timeout,
        error=PolicyEngineError,
        hint="run `make setup` to install OPA into .tools/bin",
    )
    code, out, err = done.code, done.stdout, done.stderr
    if code == 0:
        return []
    problems = _check_problems(err) or _check_problems(out)
    if problems:
        return problems
    detail = (err or out).strip().splitlines()
    return [f"{directory}: opa check failed: {detail[0] if detail else f'exit code {code}'}"]


def _check_problems(text: str) -> list[str]:
    try:
        document = json.loads(text)
    except ValueError:
        return []
    errors = document.get("errors") if isinstance(document, dict) else None
    problems = []
    for error in errors if isinstance(errors, list) else []:
        if not isinstance(error, dict):
            continue
        location = error.get("location")
        message = str(error.get("message", "error"))
        if isinstance(location, dict) and location.get("file"):
            problems.append(f"{location['file']}:{location.get('row', 0)}: {message}")
        else:
            problems.append(message)
    return problems
