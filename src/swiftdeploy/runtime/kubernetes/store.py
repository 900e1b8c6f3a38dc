"""The rollout state in a ConfigMap, `<svc>-swiftdeploy-state`: any operator's `status`
or `resume`, on any machine with the kubeconfig, reads the state the last command
saved. Writes are whole (server-side apply of one key of one object: the API server
stores all of it or none), and the Lease keeps them to one writer at a time.

A save the API server did not answer raises `KubeUnavailableError` (a TransientError)
after the call's retries: the ConfigMap then holds the previous state or this one,
whole, and saving again is the same apply. The caller's state is untouched either way
(`save` returns the saved copy only on success)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable

from pydantic import ValidationError

from swiftdeploy.errors import StateError
from swiftdeploy.manifest import Manifest
from swiftdeploy.runtime.kubernetes import objects
from swiftdeploy.runtime.kubernetes.api import Kube
from swiftdeploy.state import State

KEY = "state.json"


class ConfigMapStateStore:
    def __init__(
        self, kube: Kube, manifest: Manifest, guard: Callable[[], None] = lambda: None
    ) -> None:
        self.kube = kube
        self.manifest = manifest
        self.guard = guard  # raises when this CLI no longer holds the service's Lease
        self.name = objects.state_name(manifest)

    def load(self) -> State:
        found = self.kube.get("ConfigMap", self.name)
        text = (found or {}).get("data", {}).get(KEY)
        if not text:
            return State()
        try:
            return State.model_validate(json.loads(text))
        except (ValueError, ValidationError) as exc:
            raise StateError(
                f"ConfigMap {self.kube.namespace}/{self.name}: the state is corrupt "
                f"({str(exc).splitlines()[0]})",
                hint="run `swiftdeploy teardown` to start over",
            ) from None

    def save(self, state: State) -> State:
        self.guard()  # the Kube guard checks the Lease too; this also stops a lost one early
        state = state.model_copy(update={"updated_at": time.time()})
        self.kube.apply(objects.state_config_map(self.manifest, state.model_dump_json()))
        return state
