"""One driver per service across machines: a `coordination.k8s.io/v1` Lease,
`<svc>-swiftdeploy`, held while a mutating command runs and renewed in the
background. Another CLI is refused with the holder's name; a lease its holder
stopped renewing (a crashed or partitioned CLI) is taken over once it expires, and
at once when its holder was a process on this machine that is gone.

Every write carries the resourceVersion it read, so two CLIs racing for a free or
expired lease cannot both win: the API server refuses the second with 409.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

from swiftdeploy.errors import LockedError
from swiftdeploy.manifest import Manifest
from swiftdeploy.proc import pid_alive
from swiftdeploy.runtime.kubernetes import objects
from swiftdeploy.runtime.kubernetes.api import Kube, KubeApiError

LEASE_S = 15  # a holder that stops renewing is taken over after this long
RENEW_S = LEASE_S / 3


def identity() -> str:
    """host/pid/random: who holds the lease, and whether it still lives on this host."""
    return f"{socket.gethostname()}/{os.getpid()}/{secrets.token_hex(4)}"


def _now() -> datetime:
    return datetime.now(UTC)


def _micro(at: datetime) -> str:
    return at.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _parse(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None


def _dead_here(holder: str) -> bool:
    """The holder ran on this host and its process is gone (kill -9, a crash)."""
    host, _, rest = holder.partition("/")
    pid = rest.partition("/")[0]
    return host == socket.gethostname() and pid.isdigit() and not pid_alive(int(pid))


class LeaseLock:
    def __init__(self, kube: Kube, manifest: Manifest) -> None:
        self.kube = kube
        self.manifest = manifest
        self.name = objects.lease_name(manifest)
        self.me = identity()
        self._lease: dict[str, Any] | None = None
        self._stop = threading.Event()
        self.lost: str | None = None  # who holds the lease now, once we lost it

    def _body(self, previous: dict[str, Any] | None) -> dict[str, Any]:
        now = _micro(_now())
        spec = (previous or {}).get("spec", {})
        taken_over = bool(spec.get("holderIdentity")) and spec.get("holderIdentity") != self.me
        return {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {
                "name": self.name,
                "namespace": self.kube.namespace,
                "labels": objects.labels(self.manifest),
                **(
                    {"resourceVersion": previous["metadata"]["resourceVersion"]} if previous else {}
                ),
            },
            "spec": {
                "holderIdentity": self.me,
                "leaseDurationSeconds": LEASE_S,
                "acquireTime": spec.get("acquireTime") if previous and not taken_over else now,
                "renewTime": now,
                "leaseTransitions": int(spec.get("leaseTransitions", 0)) + int(taken_over),
            },
        }

    def acquire(self) -> None:
        current = self.kube.get("Lease", self.name)
        if current is not None:
            self._refuse_if_held(current)
        try:
            if current is None:
                self._lease = self.kube.create(self._body(None))
            else:
                self._lease = self.kube.replace(self._body(current))
        except KubeApiError as exc:
            if exc.status != 409:
                raise
            # Someone else created or took it between our read and our write.
            self._refuse_if_held(self.kube.get("Lease", self.name) or {})
            raise

    def _refuse_if_held(self, lease: dict[str, Any]) -> None:
        spec = lease.get("spec", {})
        holder = str(spec.get("holderIdentity") or "")
        renewed = _parse(spec.get("renewTime"))
        duration = int(spec.get("leaseDurationSeconds") or LEASE_S)
        if not holder or renewed is None or _dead_here(holder):
            return
        left = (renewed + timedelta(seconds=duration) - _now()).total_seconds()
        if left <= 0:
            return
        raise LockedError(
            f"{self.manifest.service.name} is being driven by {holder} "
            f"(Lease {self.kube.namespace}/{self.name})",
            hint=f"wait for it to finish; a holder that stops renewing loses it within {left:.0f}s",
        )

    def _renew_loop(self) -> None:
        while self.lost is None and not self._stop.wait(RENEW_S):
            self.renew()

    def renew(self) -> None:
        """Renew the lease; when someone else holds it now, remember who (`lost`), so
        the next state save stops this CLI rather than let two drive the service."""
        try:
            assert self._lease is not None
            self._lease = self.kube.replace(self._body(self._lease))
            return
        except KubeApiError as exc:
            if exc.status != 409:
                return  # the API server is away: retried at the next period
        try:
            current = self.kube.get("Lease", self.name)
        except KubeApiError:
            return
        holder = (current or {}).get("spec", {}).get("holderIdentity")
        if current is not None and holder == self.me:
            self._lease = current  # our own write raced a read: carry on from it
        else:
            self.lost = str(holder or "nobody (the Lease was deleted)")

    def check(self) -> None:
        """Raises LockedError once the lease was lost (see `renew`)."""
        if self.lost is not None:
            raise LockedError(
                f"lost the Lease {self.kube.namespace}/{self.name} to {self.lost}: "
                "stopped before changing anything more",
                hint="`swiftdeploy status` shows where the rollout stands",
            )

    def release(self) -> None:
        lease = self._lease
        if lease is None:
            return
        with contextlib.suppress(KubeApiError):  # an unreleased lease expires on its own
            self.kube.delete("Lease", self.name, lease["metadata"]["resourceVersion"])
        self._lease = None

    @contextmanager
    def held(self) -> Iterator[None]:
        self.acquire()
        renewer = threading.Thread(target=self._renew_loop, name="lease-renewer", daemon=True)
        renewer.start()
        try:
            yield
        finally:
            self._stop.set()
            renewer.join(timeout=5)
            self.release()
