"""One driver per service across machines: a `coordination.k8s.io/v1` Lease,
`<svc>-swiftdeploy`, held while a mutating command (or the driver) runs and renewed in
the background. Another CLI is refused with the holder's name; a lease its holder
stopped renewing (a crashed or partitioned CLI) is taken over once it expires, and at
once only when its holder was provably a process of this machine that is gone.

Every write carries the resourceVersion it read, so two CLIs racing for a free or
expired lease cannot both win: the API server refuses the second with 409.

While held, the Lease is the `Kube` guard: before every other write to the cluster it is
read back, and a holder that lost it (deleted, someone else's holderIdentity) stops
there; one that merely outlived it (an API server outage longer than the lease) takes
it back first, if nobody else did. Renewal keeps trying through any error (an API
server away, or refusing while its authorizer fills its caches after a restart); only a
lease found lost ends it. Every write carries the lease's uid too: a PUT to a Lease
someone deleted would otherwise create it again (Leases allow create-on-update), and the
holder would never learn that it had lost it. Once lost, every further API call of
`kube`, reads included, raises, so a holder that is only reading stops there too.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from swiftdeploy.durations import format_duration
from swiftdeploy.errors import LockedError, SwiftDeployError
from swiftdeploy.manifest import Manifest
from swiftdeploy.runtime.kubernetes import objects
from swiftdeploy.runtime.kubernetes.api import Kube, KubeApiError, KubeUnavailableError

LEASE_S = 15  # a holder that stops renewing is taken over after this long
Lease = dict[str, Any]


@dataclass(frozen=True)
class Holder:
    """Who holds a lease, with what tells whether that process still runs: a pid means
    something only on the same boot of the same host, in the same PID namespace (a
    container or a CI runner may share the hostname), and only with the same start
    time (pids are reused)."""

    host: str
    pid: int
    token: str
    boot_id: str
    pid_ns: str
    started: str  # /proc/PID/stat field 22: clock ticks after boot

    def __str__(self) -> str:
        return (
            f"{self.host}/{self.pid}/{self.token} "
            f"boot={self.boot_id} pidns={self.pid_ns} start={self.started}"
        )

    @classmethod
    def parse(cls, text: str) -> Holder | None:
        """None for an identity not in this form (an older CLI's, another tool's)."""
        head, *facts = text.split(" ")
        host, _, rest = head.partition("/")
        pid, _, token = rest.partition("/")
        given = dict(fact.partition("=")[::2] for fact in facts)
        if not pid.isdigit() or not {"boot", "pidns", "start"} <= given.keys():
            return None
        return cls(host, int(pid), token, given["boot"], given["pidns"], given["start"])


def _read(path: str) -> str:
    try:
        return Path(path).read_text(encoding="ascii").strip()
    except OSError:
        return ""


def _pid_ns() -> str:
    """The inode of this process's PID namespace ('pid:[4026531836]' -> '4026531836')."""
    try:
        return os.readlink("/proc/self/ns/pid").partition("[")[2].rstrip("]")
    except OSError:
        return ""


def started(pid: int) -> str | None:
    """The process's start time (field 22 of /proc/PID/stat), or None when no such
    process runs (a zombie is dead for this purpose)."""
    stat = _read(f"/proc/{pid}/stat")
    fields = stat.rsplit(")", 1)[-1].split()  # after the command name, which may hold spaces
    if len(fields) < 20 or fields[0] == "Z":
        return None
    return fields[19]  # fields[0] is field 3 (state)


def here() -> Holder:
    """This process, as a lease holder."""
    pid = os.getpid()
    return Holder(
        host=socket.gethostname(),
        pid=pid,
        token=secrets.token_hex(4),
        boot_id=_read("/proc/sys/kernel/random/boot_id"),
        pid_ns=_pid_ns(),
        started=started(pid) or "",
    )


def identity() -> str:
    return str(here())


def dead_here(holder: str) -> bool:
    """The holder was a process of this host's current boot, in this PID namespace, and
    no process with its pid and start time runs: it is gone (kill -9, a crash). Anything
    less certain (another namespace, an unknown form) waits for the lease to expire."""
    them, me = Holder.parse(holder), here()
    if them is None or not (me.boot_id and me.pid_ns):
        return False
    same_place = (them.host, them.boot_id, them.pid_ns) == (me.host, me.boot_id, me.pid_ns)
    return same_place and started(them.pid) != them.started


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


def _left(lease: Lease) -> float | None:
    """Seconds until the lease expires (negative once it has), None if never renewed."""
    spec = lease.get("spec", {})
    renewed = _parse(spec.get("renewTime"))
    if renewed is None:
        return None
    duration = int(spec.get("leaseDurationSeconds") or LEASE_S)
    return (renewed + timedelta(seconds=duration) - _now()).total_seconds()


def _holder(lease: Lease | None) -> str:
    return str((lease or {}).get("spec", {}).get("holderIdentity") or "")


class LeaseLock:
    def __init__(self, kube: Kube, manifest: Manifest, duration_s: int = LEASE_S) -> None:
        self.kube = kube
        self.manifest = manifest
        self.name = objects.lease_name(manifest)
        self.duration_s = duration_s
        self.me = identity()
        self._lease: Lease | None = None
        self._mutex = threading.Lock()  # the renewer and the guard both write the lease
        self._stop = threading.Event()
        self._previous_guard: Callable[[], None] | None = None
        self._previous_halt: Callable[[], None] | None = None
        self.lost: str | None = None  # who holds the lease now, once we lost it
        # where the renewer says it cannot renew (the driver's log); once per fault
        self.say: Callable[[str], None] = lambda line: None

    def _body(self, previous: Lease | None) -> Lease:
        now = _micro(_now())
        spec = (previous or {}).get("spec", {})
        holder = spec.get("holderIdentity")
        taken_over = bool(holder) and holder != self.me
        expired = previous is not None and (_left(previous) or 0) <= 0
        return {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {
                "name": self.name,
                "namespace": self.kube.namespace,
                "labels": objects.labels(self.manifest),
                # the uid makes the PUT fail (409) on a Lease deleted since, rather than
                # create it again under our name
                **{
                    key: previous["metadata"][key]
                    for key in ("resourceVersion", "uid")
                    if previous and key in previous["metadata"]
                },
            },
            "spec": {
                "holderIdentity": self.me,
                "leaseDurationSeconds": self.duration_s,
                "acquireTime": spec.get("acquireTime")
                if previous and not taken_over and not expired
                else now,
                "renewTime": now,
                "leaseTransitions": int(spec.get("leaseTransitions", 0)) + int(taken_over),
            },
        }

    def acquire(self) -> None:
        """Take the lease (refused while another holder has it) and guard every write
        of `kube` with it until `release`."""
        current = self.kube.get("Lease", self.name)
        if current is not None:
            self._refuse_if_held(current)
        try:
            with self._mutex:
                if current is None:
                    self._lease = self.kube.create(self._body(None), guarded=False)
                else:
                    self._lease = self.kube.replace(self._body(current), guarded=False)
        except KubeApiError as exc:
            if exc.status != 409:
                raise
            # Someone else created or took it between our read and our write, or our
            # own write went through and its answer was lost (the call was retried).
            now = self.kube.get("Lease", self.name) or {}
            if _holder(now) != self.me:
                self._refuse_if_held(now)
                raise
            self._lease = now
        self._previous_guard, self.kube.guard = self.kube.guard, self.verify
        self._previous_halt, self.kube.halt = self.kube.halt, self.check

    def _refuse_if_held(self, lease: Lease) -> None:
        holder = _holder(lease)
        left = _left(lease)
        if not holder or holder == self.me or left is None or left <= 0 or dead_here(holder):
            return
        raise LockedError(
            f"{self.manifest.service.name} is being driven by {holder} "
            f"(Lease {self.kube.namespace}/{self.name})",
            hint="wait for it to finish; a holder that stops renewing loses it within"
            f" {format_duration(left)}",
        )

    def _renew_loop(self) -> None:
        """Renews every third of the lease until stopped or lost. Any error is tried
        again at the next period, never ends the thread: a renewer gone with the lease
        still held would let it expire under a live holder."""
        said = ""
        while self.lost is None and not self._stop.wait(self.duration_s / 3):
            try:
                self.renew()
            except Exception as exc:  # whatever it is, renew again at the next period
                line = exc.one_line() if isinstance(exc, SwiftDeployError) else repr(exc)
                if line != said:
                    self.say(f"driver: could not renew the Lease (trying again): {line}")
                    said = line
            else:
                if said:
                    self.say("driver: renewed the Lease again")
                    said = ""

    def renew(self) -> None:
        """Renew the lease; when someone else holds it now, or nobody (deleted),
        remember it (`lost`), so the next write stops this process rather than let two
        drive the service. An unreachable API server raises KubeUnavailableError: the
        lease is ours until it expires, and renewing again once the server is back
        keeps it (or takes it back if nobody else did)."""
        with self._mutex:
            if self._lease is None or self.lost is not None:
                return
            try:
                self._lease = self.kube.replace(self._body(self._lease), guarded=False)
                return
            except KubeUnavailableError:
                raise
            except KubeApiError:
                pass  # 409 (written since) or 404 (deleted): see who holds it now
            self._settle(self.kube.get("Lease", self.name))

    def _settle(self, current: Lease | None) -> None:
        """After a refused write: carry on from our own lease, or mark it lost."""
        if current is not None and _holder(current) == self.me:
            self._lease = current  # our own write raced a read
        else:
            self.lost = _holder(current) or "nobody (the Lease was deleted)"

    def verify(self) -> None:
        """The guard before a write: the lease, read back now, is still ours; raises
        LockedError once it is not, KubeUnavailableError when it cannot be read."""
        self.check()
        with self._mutex:
            current = self.kube.get("Lease", self.name)
            if current is None or _holder(current) != self.me:
                self._settle(current)
            elif (_left(current) or 0) <= 0:
                # Not renewed in time (an outage longer than the lease) and nobody took
                # it: take it back before writing, or learn who did.
                try:
                    self._lease = self.kube.replace(self._body(current), guarded=False)
                except KubeUnavailableError:
                    raise
                except KubeApiError:
                    self._settle(self.kube.get("Lease", self.name))
            else:
                self._lease = current
        self.check()

    def check(self) -> None:
        """Raises LockedError once the lease was lost (see `renew` and `verify`)."""
        if self.lost is not None:
            raise LockedError(
                f"lost the Lease {self.kube.namespace}/{self.name} to {self.lost}: "
                "stopped before changing anything more",
                hint="`swiftdeploy status` shows where the rollout stands",
            )

    def release(self) -> None:
        if self._previous_guard is not None:
            self.kube.guard, self._previous_guard = self._previous_guard, None
        if self._previous_halt is not None:
            self.kube.halt, self._previous_halt = self._previous_halt, None
        with self._mutex:
            lease, self._lease = self._lease, None
        if lease is None or self.lost is not None:
            return
        with contextlib.suppress(KubeApiError):  # an unreleased lease expires on its own
            self.kube.delete(
                "Lease", self.name, lease["metadata"]["resourceVersion"], guarded=False
            )

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
