"""The notifications outbox on Kubernetes: the ConfigMap `<svc>-swiftdeploy-outbox`
(notify/outbox.py says what it holds), so a new driver pod goes on delivering where
the last one stopped. Written whole by server-side apply, by the driver alone (it holds
the Lease; the Kube guard re-reads it before every write)."""

from __future__ import annotations

from swiftdeploy.manifest import Manifest
from swiftdeploy.runtime.kubernetes import objects
from swiftdeploy.runtime.kubernetes.api import Kube

KEY = "outbox.json"


def outbox_name(manifest: Manifest) -> str:
    return f"{manifest.service.name}-swiftdeploy-outbox"


class ConfigMapText:
    """notify.outbox.TextStore in a ConfigMap."""

    def __init__(self, kube: Kube, manifest: Manifest) -> None:
        self.kube = kube
        self.manifest = manifest
        self.name = outbox_name(manifest)

    def read(self) -> str | None:
        found = self.kube.get("ConfigMap", self.name)
        text = (found or {}).get("data", {}).get(KEY)
        return text if isinstance(text, str) else None

    def write(self, text: str) -> None:
        self.kube.apply(
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {
                    "name": self.name,
                    "namespace": self.manifest.kubernetes.namespace,
                    # teardown deletes it with the service's other objects
                    "labels": objects.labels(self.manifest),
                },
                "data": {KEY: text},
            }
        )
