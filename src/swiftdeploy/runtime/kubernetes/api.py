"""The connection to the API server: the official `kubernetes` client, configured from
the user's kubeconfig (the manifest's context, or `--kube-context`), every call
bounded by a timeout and counted, every refusal one line naming the object.

`Kube` speaks the REST paths of the few kinds SwiftDeploy writes, with plain dicts in
and out, through the client's configured transport (auth, TLS, proxies): one code
path for built-in kinds and the Gateway API's HTTPRoute alike.

Objects are written with server-side apply (one PATCH whether or not the object
exists, and the same call with dryRun=All is `validate`'s check), so every write is
idempotent and a resumed command applies what an interrupted one may have half done.

Faults: a call the API server did not answer (refused, reset, timed out) or answered
429 or 5xx is retried a few times within the call, with backoff (a 429's Retry-After
honoured), then raises `KubeUnavailableError`, a `TransientError`: a driver holds and
tries again later. Any other refusal (4xx) is permanent. Before every write, `Kube`
calls its `guard` (the Lease's check), so a driver that lost its Lease writes nothing.
"""

from __future__ import annotations

import json
import os
import random
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from swiftdeploy.errors import BadInputError, OperationalError, TransientError
from swiftdeploy.manifest import LoadedManifest
from swiftdeploy.registry import missing_extra

try:  # the swiftdeploy[kubernetes] extra
    import kubernetes.client
    import kubernetes.config
    import urllib3
    from kubernetes.client.exceptions import ApiException
except ModuleNotFoundError:
    raise missing_extra("kubernetes") from None

CONTEXT_ENV = "SWIFTDEPLOY_KUBE_CONTEXT"  # set by `--kube-context` (cli/app.py)
FIELD_MANAGER = "swiftdeploy"
APPLY = "application/apply-patch+yaml"
# (connect, read): a stopped server refuses at once, a hung one costs the read timeout.
REQUEST_TIMEOUT_S = (3.0, 10.0)
# A call's own retries of a transient failure: a few, with backoff, bounded in time so
# a caller (the driver's look) gets its answer or a TransientError within seconds.
ATTEMPTS = 4
BACKOFF_S = 0.25  # doubled each attempt, with jitter
RETRY_AFTER_MAX_S = 5.0  # a 429's Retry-After, at most this
RETRY_BUDGET_S = 8.0  # no new attempt once this long has passed since the first
Obj = dict[str, Any]


@dataclass(frozen=True)
class Kind:
    api: str  # the group-version path: /api/v1, /apis/apps/v1, ...
    plural: str


KINDS = {
    "Deployment": Kind("/apis/apps/v1", "deployments"),
    "Service": Kind("/api/v1", "services"),
    "ConfigMap": Kind("/api/v1", "configmaps"),
    "Secret": Kind("/api/v1", "secrets"),
    "Pod": Kind("/api/v1", "pods"),
    "HTTPRoute": Kind("/apis/gateway.networking.k8s.io/v1", "httproutes"),
    "Lease": Kind("/apis/coordination.k8s.io/v1", "leases"),
}


class KubeApiError(OperationalError):
    """The API server refused a call, or could not be reached."""

    def __init__(
        self, message: str, status: int | None = None, hint: str | None = None, said: str = ""
    ) -> None:
        super().__init__(message, hint=hint)
        self.status = status
        self.said = said  # the API server's own words, for callers that reword


class KubeUnavailableError(KubeApiError, TransientError):
    """The API server did not answer, or answered 429 or 5xx, after the call's retries:
    expected back (a restart, an overload), so a driver holds rather than gives up."""


def transient(status: int | None) -> bool:
    """No answer (None; 0 is the client's word for a TLS failure), 429 or 5xx."""
    return status is None or status in {0, 429} or status >= 500


def retry_after(headers: Any) -> float | None:
    """A 429's or 503's Retry-After in seconds (the API server sends whole seconds)."""
    try:
        value = float((headers or {}).get("Retry-After", ""))
    except (TypeError, ValueError):
        return None
    return min(max(value, 0.0), RETRY_AFTER_MAX_S)


class CountingApiClient(kubernetes.client.ApiClient):
    """An ApiClient that counts its requests (API calls per look are benchmarked) and
    bounds each one, so an unreachable server is an error, not a hang."""

    calls = 0

    def call_api(
        self,
        method: Any,
        url: Any,
        header_params: Any = None,
        body: Any = None,
        post_params: Any = None,
        _request_timeout: Any = None,
    ) -> Any:
        self.calls += 1
        return super().call_api(
            method, url, header_params, body, post_params, _request_timeout or REQUEST_TIMEOUT_S
        )


def context_of(loaded: LoadedManifest) -> str | None:
    return os.environ.get(CONTEXT_ENV) or loaded.manifest.kubernetes.context


def connect(loaded: LoadedManifest) -> CountingApiClient:
    """A client for the kubeconfig's context; a missing or broken kubeconfig is bad input."""
    configuration = kubernetes.client.Configuration()
    context = context_of(loaded)
    try:
        kubernetes.config.load_kube_config(  # type: ignore[no-untyped-call]
            # KUBECONFIG as it is now: the client reads it once, when it is imported
            config_file=os.environ.get("KUBECONFIG") or None,
            context=context,
            client_configuration=configuration,
            persist_config=False,
        )
    except (kubernetes.config.ConfigException, OSError) as exc:
        where = f"context {context!r}" if context else "the current context"
        raise BadInputError(
            f"{loaded.where('kubernetes.context')}: cannot use {where} of the kubeconfig: "
            + " ".join(str(exc).split()),
            hint="set KUBECONFIG, kubernetes.context or --kube-context",
        ) from None
    return client_for(configuration)


def client_for(configuration: kubernetes.client.Configuration) -> CountingApiClient:
    configuration.retries = 0  # `Kube.request` retries, with backoff and a bound
    return CountingApiClient(configuration=configuration)


def message_of(exc: ApiException) -> str:
    """The API server's own message from a refusal's Status body."""
    try:
        body = json.loads(exc.body or "")
        return str(body.get("message") or exc.reason)
    except (ValueError, AttributeError):
        return str(exc.reason or exc.status)


@contextmanager
def calling(what: str) -> Iterator[None]:
    """Map the client's exceptions to one line naming the call: `what` is e.g.
    'apply Deployment demo-canary'."""
    try:
        yield
    except ApiException as exc:
        status = int(exc.status) if exc.status else None
        said = message_of(exc)
        if transient(status):
            raise KubeUnavailableError(
                f"Kubernetes API: {what}: the API server is unavailable ({status or said})",
                status=status,
                hint="retried; a driver holds and tries again",
                said=said,
            ) from None
        hint = None
        if status == 403:
            hint = (
                "the kubeconfig's user lacks a permission: `swiftdeploy kube rbac` prints the Roles"
            )
        raise KubeApiError(
            f"Kubernetes API: {what}: {said}", status=status, hint=hint, said=said
        ) from None
    except (urllib3.exceptions.HTTPError, OSError) as exc:
        raise KubeUnavailableError(
            f"Kubernetes API: {what}: the API server did not answer ({type(exc).__name__})",
            hint="is the cluster up and the kubeconfig's server right?",
        ) from None


class Kube:
    """The calls SwiftDeploy makes, in one namespace."""

    def __init__(self, client: CountingApiClient, namespace: str) -> None:
        self.client = client
        self.namespace = namespace
        # Called before every write; raises when this process may no longer write
        # (the Lease's check, installed while a command holds it).
        self.guard: Callable[[], None] = lambda: None
        # Called before every call, reads too; raises once this process must stop
        # (the Lease found lost, without asking the API server again).
        self.halt: Callable[[], None] = lambda: None

    @property
    def calls(self) -> int:
        return self.client.calls

    @property
    def server(self) -> str:
        return str(self.client.configuration.host)

    def _path(self, kind: str, name: str | None = None) -> str:
        spec = KINDS[kind]
        path = f"{spec.api}/namespaces/{self.namespace}/{spec.plural}"
        return f"{path}/{name}" if name else path

    def request(
        self,
        method: str,
        path: str,
        *,
        query: dict[str, str] | None = None,
        body: Obj | None = None,
        content_type: str = "application/json",
        guarded: bool = True,
    ) -> Obj:
        """One call, its transient failures retried (see the module's docstring); raises
        ApiException for a refusal and the transport's error for no answer (`calling`
        words them). A write first passes the guard (`guarded=False` only for the
        Lease's own writes: the guard is the Lease); a dry run writes nothing."""
        self.halt()
        if method != "GET" and guarded and "dryRun" not in (query or {}):
            self.guard()
        started = time.monotonic()
        for attempt in range(ATTEMPTS):
            try:
                return self._request_once(method, path, query, body, content_type)
            except (ApiException, urllib3.exceptions.HTTPError, OSError) as exc:
                status = exc.status if isinstance(exc, ApiException) else None
                if not transient(status) or attempt == ATTEMPTS - 1:
                    raise
                pause = BACKOFF_S * 2**attempt * random.uniform(0.5, 1.0)
                if isinstance(exc, ApiException) and status in (429, 503):
                    pause = retry_after(exc.headers) or pause
                if time.monotonic() + pause - started > RETRY_BUDGET_S:
                    raise
                time.sleep(pause)
        raise AssertionError("unreachable: the last attempt returns or raises")

    def _request_once(
        self,
        method: str,
        path: str,
        query: dict[str, str] | None,
        body: Obj | None,
        content_type: str,
    ) -> Obj:
        headers = {"Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = content_type
        method, url, headers, payload, post = self.client.param_serialize(
            method,
            path,
            query_params=list((query or {}).items()),
            header_params=headers,
            body=body,
            auth_settings=["BearerToken"],
        )
        response = self.client.call_api(method, url, headers, payload, post)
        data = response.read()
        if not 200 <= response.status < 300:
            refusal = ApiException(
                status=response.status,
                reason=response.reason,
                body=data.decode("utf-8", "replace") if data else None,
            )
            refusal.headers = response.headers
            raise refusal
        return json.loads(data) if data else {}

    def get(self, kind: str, name: str) -> Obj | None:
        """The object, or None when it does not exist."""
        try:
            with calling(f"read {kind} {name}"):
                return self.request("GET", self._path(kind, name))
        except KubeApiError as exc:
            if exc.status == 404:
                return None
            raise

    def list(self, kind: str, label_selector: str) -> list[Obj]:
        with calling(f"list {KINDS[kind].plural} ({label_selector})"):
            answer = self.request("GET", self._path(kind), query={"labelSelector": label_selector})
        return list(answer.get("items", []))

    def apply(self, obj: Obj, dry_run: bool = False) -> Obj:
        """Server-side apply: create or update to exactly these fields."""
        kind, name = obj["kind"], obj["metadata"]["name"]
        query = {"fieldManager": FIELD_MANAGER, "force": "true"}
        if dry_run:
            query["dryRun"] = "All"
        with calling(f"{'dry-run ' if dry_run else ''}apply {kind} {name}"):
            return self.request(
                "PATCH", self._path(kind, name), query=query, body=obj, content_type=APPLY
            )

    def create(self, obj: Obj, guarded: bool = True) -> Obj:
        with calling(f"create {obj['kind']} {obj['metadata']['name']}"):
            return self.request("POST", self._path(obj["kind"]), body=obj, guarded=guarded)

    def replace(self, obj: Obj, guarded: bool = True) -> Obj:
        """PUT with the object's resourceVersion: 409 when someone wrote it since."""
        kind, name = obj["kind"], obj["metadata"]["name"]
        with calling(f"update {kind} {name}"):
            return self.request("PUT", self._path(kind, name), body=obj, guarded=guarded)

    def delete(
        self, kind: str, name: str, resource_version: str | None = None, guarded: bool = True
    ) -> None:
        """Delete (its pods too, in the background); an absent object is no error. With
        `resource_version`, only if nobody wrote it since (else 409)."""
        options: Obj = {"propagationPolicy": "Background"}
        if resource_version:
            options["preconditions"] = {"resourceVersion": resource_version}
        try:
            with calling(f"delete {kind} {name}"):
                self.request("DELETE", self._path(kind, name), body=options, guarded=guarded)
        except KubeApiError as exc:
            if exc.status != 404:
                raise

    def version(self) -> str:
        with calling("read the server version"):
            return str(self.request("GET", "/version").get("gitVersion", "unknown"))

    def serves(self, group_version: str, plural: str) -> bool:
        """Whether the API server serves a resource (discovery needs no Role)."""
        try:
            with calling(f"discover {group_version}"):
                resources = self.request("GET", f"/apis/{group_version}").get("resources", [])
        except KubeApiError as exc:
            if exc.status == 404:
                return False
            raise
        return any(r.get("name") == plural for r in resources)


def open_kube(loaded: LoadedManifest) -> Kube:
    return Kube(connect(loaded), loaded.manifest.kubernetes.namespace)
