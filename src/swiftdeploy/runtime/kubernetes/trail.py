"""The audit trail's copy in the cluster: where its bytes live, with no knowledge of
what they mean (the audit package checks them; `swiftdeploy.commands.cluster_trail`
joins the two).

For service S, in the manifest's namespace:

- sealed segments: immutable ConfigMaps `S-swiftdeploy-trail-<first seq, 10 digits>`,
  labelled `swiftdeploy.dev/service=S, swiftdeploy.dev/part=trail,
  swiftdeploy.dev/trail=sealed`, holding `records.jsonl` (the records' lines, byte for
  byte as the driver's file holds them) and `checkpoint` (a signed head of its last
  record);
- the open tail: the one mutable ConfigMap `S-swiftdeploy-trail-tail` (label
  `swiftdeploy.dev/trail=tail`): the records after the last segment, the head file
  (MAC'd) and a signed checkpoint of the last record, written with its resourceVersion
  so a change by anyone else is noticed rather than overwritten;
- the keys: the Secret `S-swiftdeploy-audit-key` (the HMAC key and the ed25519 signing
  key; immutable, read by the driver's ServiceAccount only);
- the ConfigMap `S-swiftdeploy-audit-public`: the public key, and the signed head again,
  so a deleted tail is noticed.

Nothing here carries the `app` label teardown deletes by: the record outlives the service.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from dataclasses import dataclass, field

from swiftdeploy.errors import AuditError
from swiftdeploy.manifest import Manifest
from swiftdeploy.runtime.kubernetes.api import Kube, KubeApiError, Obj

SERVICE_LABEL = "swiftdeploy.dev/service"
PART_LABEL = "swiftdeploy.dev/part"
SEGMENT_LABEL = "swiftdeploy.dev/trail"
FIRST_SEQ = "swiftdeploy.dev/first-seq"
LAST_SEQ = "swiftdeploy.dev/last-seq"
RECORDS = "records.jsonl"
HEAD = "head"
CHECKPOINT = "checkpoint"
PUBLIC_KEY = "public_key"


class TrailConflictError(AuditError):
    """The cluster's trail changed under the driver (someone else wrote or deleted it)."""


def key_secret_name(manifest: Manifest) -> str:
    return f"{manifest.service.name}-swiftdeploy-audit-key"


def public_name(manifest: Manifest) -> str:
    return f"{manifest.service.name}-swiftdeploy-audit-public"


def tail_name(manifest: Manifest) -> str:
    return f"{manifest.service.name}-swiftdeploy-trail-tail"


def segment_name(manifest: Manifest, first_seq: int) -> str:
    return f"{manifest.service.name}-swiftdeploy-trail-{first_seq:010d}"


def selector(manifest: Manifest) -> str:
    return f"{SERVICE_LABEL}={manifest.service.name},{PART_LABEL}=trail"


@dataclass(frozen=True)
class Segment:
    name: str
    first_seq: int | None  # None: its annotation is missing or not a number
    records: bytes
    checkpoint: str | None


@dataclass(frozen=True)
class Tail:
    records: bytes
    head: str | None
    checkpoint: str | None
    resource_version: str


@dataclass(frozen=True)
class Snapshot:
    """What the cluster holds of the trail, as read in one go."""

    segments: list[Segment] = field(default_factory=list)  # sorted by first seq
    tail: Tail | None = None
    public_key: str | None = None
    head: str | None = None  # the signed head in the public ConfigMap

    @property
    def empty(self) -> bool:
        return not self.segments and self.tail is None


@dataclass(frozen=True)
class KeyRead:
    """The Secret's files (None when it cannot be read) and why not."""

    files: dict[str, bytes] | None
    why_not: str | None = None
    denied: bool = False  # it exists, but this identity may not read it


class TrailStore:
    """The trail's objects in one namespace, through the caller's `Kube`."""

    def __init__(self, kube: Kube, manifest: Manifest) -> None:
        self.kube = kube
        self.manifest = manifest
        self.service = manifest.service.name

    def where(self, name: str, kind: str = "ConfigMap") -> str:
        return f"{kind} {self.kube.namespace}/{name}"

    # --- reading ------------------------------------------------------------------

    def snapshot(self) -> Snapshot:
        segments, tail = [], None
        for item in self.kube.list("ConfigMap", selector(self.manifest)):
            meta, data = item.get("metadata", {}), item.get("data") or {}
            role = (meta.get("labels") or {}).get(SEGMENT_LABEL)
            if role == "tail" and meta.get("name") == tail_name(self.manifest):
                tail = Tail(
                    data.get(RECORDS, "").encode("utf-8"),
                    data.get(HEAD),
                    data.get(CHECKPOINT),
                    str(meta.get("resourceVersion", "")),
                )
            elif role == "sealed":
                first = (meta.get("annotations") or {}).get(FIRST_SEQ, "")
                segments.append(
                    Segment(
                        str(meta.get("name")),
                        int(first) if first.isdigit() else None,
                        data.get(RECORDS, "").encode("utf-8"),
                        data.get(CHECKPOINT),
                    )
                )
        segments.sort(key=lambda s: (s.first_seq is None, s.first_seq or 0, s.name))
        public = self.kube.get("ConfigMap", public_name(self.manifest))
        public_data = (public or {}).get("data") or {}
        return Snapshot(segments, tail, public_data.get(PUBLIC_KEY), public_data.get(HEAD))

    def read_keys(self) -> KeyRead:
        """The Secret's key files; without them (no Secret, no right to read it), why."""
        name = key_secret_name(self.manifest)
        try:
            secret = self.kube.get("Secret", name)
        except KubeApiError as exc:
            if exc.status != 403:
                raise
            return KeyRead(
                None,
                f"the audit key is in {self.where(name, 'Secret')}, which only the driver's "
                "ServiceAccount may read",
                denied=True,
            )
        if secret is None:
            return KeyRead(None, f"there is no {self.where(name, 'Secret')}: no driver wrote it")
        return KeyRead(_decoded(secret.get("data") or {}))

    # --- writing (the driver only) ------------------------------------------------

    def create_keys(self, files: Mapping[str, bytes]) -> dict[str, bytes]:
        """Create the Secret with `files`, unless it exists: then its files win (two
        drivers starting at once end up with one key)."""
        name = key_secret_name(self.manifest)
        secret: Obj = {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": self._meta(name, "key"),
            "type": "Opaque",
            "immutable": True,
            "data": {k: base64.b64encode(v).decode("ascii") for k, v in files.items()},
        }
        try:
            created = self.kube.create(secret)
        except KubeApiError as exc:
            if exc.status != 409:
                raise
            created = self.kube.get("Secret", name) or {}
        return _decoded(created.get("data") or {})

    def publish(self, public_key: str, head: str | None) -> None:
        """The public key, and the signed head, for anyone who can read ConfigMaps."""
        data = {PUBLIC_KEY: public_key}
        if head is not None:
            data[HEAD] = head
        self.kube.apply(self._config_map(public_name(self.manifest), "public", data))

    def seal(self, first_seq: int, last_seq: int, records: bytes, checkpoint: str) -> None:
        """An immutable segment; one that exists already must hold the same records."""
        name = segment_name(self.manifest, first_seq)
        obj = self._config_map(
            name, "trail", {RECORDS: records.decode("utf-8"), CHECKPOINT: checkpoint}
        )
        obj["immutable"] = True
        obj["metadata"]["labels"][SEGMENT_LABEL] = "sealed"
        obj["metadata"]["annotations"] = {FIRST_SEQ: str(first_seq), LAST_SEQ: str(last_seq)}
        try:
            self.kube.create(obj)
        except KubeApiError as exc:
            if exc.status != 409:
                raise
            # Found by list: the driver's Role cannot name segments for a get.
            found = [
                item
                for item in self.kube.list("ConfigMap", selector(self.manifest))
                if item.get("metadata", {}).get("name") == name
            ]
            if not found or (found[0].get("data") or {}).get(RECORDS) != obj["data"][RECORDS]:
                raise TrailConflictError(
                    f"{self.where(name)} exists with other records than the driver's: "
                    "someone wrote the cluster's audit trail",
                    hint="run `swiftdeploy audit verify`",
                ) from None

    def write_tail(
        self, records: bytes, head: str, checkpoint: str, resource_version: str | None
    ) -> str:
        """Replace the tail (create it when `resource_version` is None); returns its new
        resourceVersion. TrailConflictError when someone else changed or deleted it."""
        name = tail_name(self.manifest)
        obj = self._config_map(
            name, "trail", {RECORDS: records.decode("utf-8"), HEAD: head, CHECKPOINT: checkpoint}
        )
        obj["metadata"]["labels"][SEGMENT_LABEL] = "tail"
        try:
            if resource_version is None:
                written = self.kube.create(obj)
            else:
                obj["metadata"]["resourceVersion"] = resource_version
                written = self.kube.replace(obj)
        except KubeApiError as exc:
            if exc.status not in (404, 409):
                raise
            raise TrailConflictError(
                f"{self.where(name)} was changed or deleted by someone other than the driver "
                f"({exc.said}): the records it held may be gone",
                hint="run `swiftdeploy audit verify`; the driver appends no more until it does",
            ) from None
        return str(written.get("metadata", {}).get("resourceVersion", ""))

    def _meta(self, name: str, part: str) -> Obj:
        return {"name": name, "labels": {SERVICE_LABEL: self.service, PART_LABEL: part}}

    def _config_map(self, name: str, part: str, data: dict[str, str]) -> Obj:
        return {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": self._meta(name, part),
            "data": data,
        }


def _decoded(data: Mapping[str, str]) -> dict[str, bytes]:
    return {key: base64.b64decode(value) for key, value in data.items()}
