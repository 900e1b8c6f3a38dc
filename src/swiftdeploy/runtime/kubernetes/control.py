"""The driver in the cluster and the people steering it meet in ConfigMaps, so any
operator's CLI, on any machine with the kubeconfig, steers the one driver through the
API server (a `state.control.ControlChannel`; never a local pid).

- `<svc>-swiftdeploy-driver`: which driver runs (its Lease identity), since when, its
  heartbeat; only the Lease's holder writes it.
- `<svc>-swiftdeploy-request-0` .. `-7`: one request each. A person's CLI creates one
  (409: that slot is in use, the next is tried); the driver takes it by an update
  carrying the resourceVersion it listed (so a request is acted on once, and a CLI
  withdrawing it races no one), answers in the same object, and the CLI that reads
  the answer deletes it (the driver deletes answers nobody read for a while). A fixed
  set of names lets the operators' Role name them (`resourceNames`) for get and delete.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import ValidationError

from swiftdeploy.errors import OperationalError
from swiftdeploy.manifest import Manifest
from swiftdeploy.runtime.kubernetes.api import Kube, KubeApiError
from swiftdeploy.state.control import Answer, DriverInfo, Request, Verb, new_request

SLOTS = 8
SERVICE_LABEL = "swiftdeploy.dev/service"
PART_LABEL = "swiftdeploy.dev/part"
PHASE_LABEL = "swiftdeploy.dev/request"  # pending | taken | answered
ANSWERED_AT = "swiftdeploy.dev/answered-at"
# An answer nobody read (its CLI was killed) is deleted after this, freeing the slot.
ABANDONED_S = 120.0
POLL_S = 0.1
Obj = dict[str, Any]


def driver_name(manifest: Manifest) -> str:
    return f"{manifest.service.name}-swiftdeploy-driver"


def request_names(manifest: Manifest) -> list[str]:
    return [f"{manifest.service.name}-swiftdeploy-request-{slot}" for slot in range(SLOTS)]


def requests_selector(manifest: Manifest) -> str:
    return f"{SERVICE_LABEL}={manifest.service.name},{PART_LABEL}=request"


def _labels(manifest: Manifest, part: str) -> dict[str, str]:
    return {
        "app.kubernetes.io/managed-by": "swiftdeploy",
        SERVICE_LABEL: manifest.service.name,
        PART_LABEL: part,
    }


class ConfigMapControl:
    """The requests to one service's driver, and its record of itself."""

    def __init__(
        self, kube: Kube, manifest: Manifest, guard: Callable[[], None] = lambda: None
    ) -> None:
        self.kube = kube
        self.manifest = manifest
        self.guard = guard  # raises once the driver no longer holds the service's Lease
        self._listed: dict[str, Obj] = {}  # request id -> its object as last read
        self._slots: dict[str, str] = {}  # request id -> the slot this CLI created

    # --- the driver's record of itself -----------------------------------------------

    def driver(self) -> DriverInfo | None:
        found = self.kube.get("ConfigMap", driver_name(self.manifest))
        try:
            return DriverInfo.model_validate_json((found or {}).get("data", {})["driver.json"])
        except (KeyError, ValidationError, ValueError):
            return None

    def save_driver(self, info: DriverInfo) -> None:
        self.guard()
        self.kube.apply(
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {
                    "name": driver_name(self.manifest),
                    "namespace": self.kube.namespace,
                    "labels": _labels(self.manifest, "driver"),
                },
                "data": {"driver.json": info.model_dump_json()},
            }
        )

    def holder(self) -> str | None:
        """Who holds the service's Lease now (None: nobody, or it expired)."""
        from swiftdeploy.runtime.kubernetes.objects import lease_name

        lease = self.kube.get("Lease", lease_name(self.manifest))
        spec = (lease or {}).get("spec", {})
        holder, renewed = spec.get("holderIdentity"), spec.get("renewTime")
        if not holder or not renewed:
            return None
        at = datetime.fromisoformat(str(renewed).replace("Z", "+00:00"))
        expires = at + timedelta(seconds=int(spec.get("leaseDurationSeconds") or 15))
        return str(holder) if expires > datetime.now(UTC) else None

    def running_driver(self) -> DriverInfo | None:
        """The driver that holds the Lease now and has said so; None when none runs."""
        info = self.driver()
        if info is None or info.exited or info.holder is None:
            return None
        return info if self.holder() == info.holder else None

    # --- a person's side ---------------------------------------------------------------

    def submit(self, verb: Verb, **fields: object) -> Request:
        request = new_request(verb, **fields)
        for name in request_names(self.manifest):
            try:
                self.kube.create(self._request_object(name, request))
            except KubeApiError as exc:
                if exc.status == 409:
                    continue  # this slot holds another request
                raise
            self._slots[request.id] = name
            return request
        raise OperationalError(
            f"{SLOTS} requests to the driver of {self.manifest.service.name} are waiting "
            "and none was taken",
            hint="`swiftdeploy status` shows whether a driver runs",
        )

    def _request_object(self, name: str, request: Request) -> Obj:
        return {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {
                "name": name,
                "namespace": self.kube.namespace,
                "labels": {**_labels(self.manifest, "request"), PHASE_LABEL: "pending"},
            },
            "data": {"request.json": request.model_dump_json()},
        }

    def _mine(self, request: Request) -> Obj | None:
        """This CLI's request object, while it still holds this request."""
        name = self._slots.get(request.id)
        found = self.kube.get("ConfigMap", name) if name else None
        if found is None or _request_of(found) != request:
            return None
        return found

    def wait_answer(self, request: Request, timeout_s: float) -> Answer | None:
        deadline = time.monotonic() + timeout_s
        while True:
            found = self._mine(request)
            text = (found or {}).get("data", {}).get("answer.json")
            if found is not None and text:
                try:
                    answer = Answer.model_validate_json(text)
                except (ValidationError, ValueError):
                    answer = None
                if answer is not None:
                    self._delete(found)
                    return answer
            if time.monotonic() >= deadline:
                return None
            time.sleep(POLL_S)

    def withdraw(self, request: Request) -> bool:
        found = self._mine(request)
        if found is None or _phase(found) != "pending":
            return False
        return self._delete(found)

    def _delete(self, found: Obj) -> bool:
        try:
            self.kube.delete("ConfigMap", found["metadata"]["name"], _version(found))
        except KubeApiError as exc:
            if exc.status == 409:
                return False  # written since it was read: taken or answered meanwhile
            raise
        return True

    # --- the driver's side --------------------------------------------------------------

    def _read(self) -> list[tuple[Request, Obj]]:
        """Every request of the service, oldest first; answers nobody read for long and
        unreadable objects are deleted, so they cannot block a slot. A driver that lost
        its Lease (its renewal found it deleted or taken) stops here, between looks,
        rather than at its next write only."""
        self.guard()
        found = []
        now = time.time()
        for item in self.kube.list("ConfigMap", requests_selector(self.manifest)):
            request = _request_of(item)
            answered = _answered_at(item)
            if request is None or (answered is not None and now - answered > ABANDONED_S):
                self._delete(item)
                continue
            found.append((request, item))
        found.sort(key=lambda pair: pair[0].id)
        self._listed = {request.id: item for request, item in found}
        return found

    def pending(self) -> list[Request]:
        return [request for request, item in self._read() if _phase(item) == "pending"]

    def interrupted(self) -> list[Request]:
        return [request for request, item in self._read() if _phase(item) == "taken"]

    def take(self, request: Request) -> bool:
        item = self._listed.get(request.id)
        if item is None:
            return False
        self.guard()
        item = _with(item, phase="taken")
        try:
            self._listed[request.id] = self.kube.replace(item)
        except KubeApiError as exc:
            if exc.status in (404, 409):
                return False  # withdrawn, or taken by another driver
            raise
        return True

    def answer(self, request: Request, answer: Answer) -> None:
        item = self._listed.pop(request.id, None)
        for _ in range(3):
            if item is None or _request_of(item) != request:
                return  # gone: nobody waits for this answer any more
            self.guard()
            try:
                self.kube.replace(_with(item, "answered", answer.model_dump_json()))
                return
            except KubeApiError as exc:
                if exc.status == 404:
                    return
                if exc.status != 409:
                    raise
            item = self.kube.get("ConfigMap", item["metadata"]["name"])


def _request_of(item: Obj) -> Request | None:
    try:
        return Request.model_validate_json(item.get("data", {})["request.json"])
    except (KeyError, ValidationError, ValueError):
        return None


def _phase(item: Obj) -> str:
    return str(item.get("metadata", {}).get("labels", {}).get(PHASE_LABEL, ""))


def _version(item: Obj) -> str | None:
    found = item.get("metadata", {}).get("resourceVersion")
    return str(found) if found else None


def _answered_at(item: Obj) -> float | None:
    text = item.get("metadata", {}).get("annotations", {}).get(ANSWERED_AT)
    try:
        return float(text) if text else None
    except ValueError:
        return None


def _with(item: Obj, phase: str, answer: str | None = None) -> Obj:
    """The object with its phase label (and answer) changed, the same resourceVersion."""
    metadata = dict(item["metadata"])
    metadata["labels"] = {**metadata.get("labels", {}), PHASE_LABEL: phase}
    if answer is not None:
        metadata["annotations"] = {**metadata.get("annotations", {}), ANSWERED_AT: str(time.time())}
    data = dict(item.get("data", {}))
    if answer is not None:
        data["answer.json"] = answer
    # a list's items carry no kind: a PUT needs it
    return {**item, "apiVersion": "v1", "kind": "ConfigMap", "metadata": metadata, "data": data}
