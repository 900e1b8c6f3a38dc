"""One audit trail per service on Kubernetes, kept in the cluster (issue 21, case 2).

The driver alone appends. It writes its local trail file as on one host (the same
`AuditLog`, keyed from the Secret rather than the user's config directory) and
`ClusterSink` mirrors every record to the cluster
(`swiftdeploy.runtime.kubernetes.trail`): full segments sealed as immutable
ConfigMaps, the open tail in one ConfigMap written at every record (while only holds
are written, at most once every QUIET_S), each write with a head signed by the
driver's ed25519 key. A driver that starts where no local trail is (another machine, a
new pod) first rebuilds it from the cluster, after checking it, so the chain goes on.

Every operator's `audit verify`, `why`, `report`, `export`, `checkpoint` and `events`
first copy the cluster's segments into `.swiftdeploy/cluster-trail/` (`sync`), then
run the file-based checks on the copy. With the Secret (the driver's ServiceAccount,
or an admin) every MAC and the head file are checked; without it (operators), the hash
chain and the driver's signed head, and the result says that the MACs were checked by
the key holder only. Each machine also keeps the public key it first saw and the
longest head it verified (`seen.json`), so a key swapped or records cut later are
named even when the cluster's own copies of the head were rewritten too.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import os
import secrets
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from swiftdeploy.audit import checkpoint as checkpoints
from swiftdeploy.audit.checkpoint import Checkpoint
from swiftdeploy.audit.head import Head, head_bytes, head_path, write_head
from swiftdeploy.audit.keys import (
    KEY_BYTES,
    RECORD_KEY_FILE,
    SIGNING_KEY_FILE,
    KeyStore,
    MemoryKeyStore,
)
from swiftdeploy.audit.log import AuditLog, Record, trail_files, utc_timestamp
from swiftdeploy.audit.recorder import AuditRecorder, Recorder
from swiftdeploy.audit.records import canonical_bytes, parse_json
from swiftdeploy.audit.statecheck import REFUSED, state_problem
from swiftdeploy.audit.verify import Problem, VerifyResult, read_trail, verify
from swiftdeploy.commands.context import audit_settings
from swiftdeploy.errors import AuditError, BadInputError, OperationalError, TransientError
from swiftdeploy.fleet import Fleet
from swiftdeploy.fsutil import atomic_write, private_dir
from swiftdeploy.manifest import LoadedManifest
from swiftdeploy.state import State

if TYPE_CHECKING:  # the kubernetes client loads only when a cluster is used
    from swiftdeploy.runtime.kubernetes.api import Kube
    from swiftdeploy.runtime.kubernetes.trail import Snapshot, TrailStore

CACHE = "cluster-trail"  # operators' copy of the cluster's trail
DRIVER_DIR = "driver-trail"  # the driver's own trail, mirrored to the cluster
TRAIL = "history.jsonl"
SEEN = "seen.json"
HEAD_COPY = "cluster-head.json"
# A ConfigMap holds at most 1 MiB: a segment is sealed before its records pass this.
SEGMENT_BYTES = 512 * 1024
QUIET_S = 3.0  # while only holds are written, the tail is written at most this often


def driver_trail(loaded: LoadedManifest) -> Path:
    """The driver's local copy of the cluster's trail: a file of its own, apart from
    `audit.path`, which a CLI on the same machine may have written with its user's key."""
    return loaded.state_dir / DRIVER_DIR / TRAIL


def is_cluster(loaded: LoadedManifest) -> bool:
    return loaded.manifest.runtime == "kubernetes"


def _store(loaded: LoadedManifest, kube: Kube | None) -> TrailStore:
    from swiftdeploy.runtime.kubernetes import kube_of
    from swiftdeploy.runtime.kubernetes.trail import TrailStore

    return TrailStore(kube or kube_of(loaded), loaded.manifest)


# --- the cluster's chain, copied to files --------------------------------------------


@dataclass(frozen=True)
class _Line:
    seq: int | None
    hash: str | None
    raw: bytes


def _lines(data: bytes) -> list[_Line]:
    """The lines of a blob as written (a last one without a newline kept: torn)."""
    out = []
    for raw in data.splitlines(keepends=True):
        try:
            record = parse_json(raw.rstrip(b"\n"))
        except ValueError:
            record = None
        seq = record.get("seq") if isinstance(record, dict) else None
        hash_ = record.get("hash") if isinstance(record, dict) else None
        out.append(
            _Line(
                seq if isinstance(seq, int) else None,
                hash_ if isinstance(hash_, str) else None,
                raw,
            )
        )
    return out


def _chain(snapshot: Snapshot) -> tuple[list[list[_Line]], list[_Line]]:
    """(each segment's lines, the tail's lines after the last segment). A tail that
    still holds records a segment sealed (the driver stopped between the two writes)
    loses those copies; any other line stays, for verify to judge."""
    segments = [_lines(segment.records) for segment in snapshot.segments]
    sealed = {line.raw for lines in segments for line in lines}
    last = max((line.seq or 0 for lines in segments for line in lines), default=0)
    tail = _lines(snapshot.tail.records) if snapshot.tail else []
    tail = [line for line in tail if not (line.raw in sealed and (line.seq or 0) <= last)]
    return segments, tail


def _write_copy(snapshot: Snapshot, directory: Path) -> Path:
    """The cluster's chain as a local trail: segments as history.jsonl.1, .2, ..., the
    tail as history.jsonl, its head file beside it. Returns the trail's path. Written
    under the trail's lock, as a writer would, so that a reader on this machine (verify,
    `events --follow`) never sees half of it; only files that changed are written."""
    private_dir(directory)
    path = directory / TRAIL
    segments, tail = _chain(snapshot)
    wanted = {path.with_name(f"{TRAIL}.{n}"): _text(lines) for n, lines in enumerate(segments, 1)}
    if snapshot.tail is not None:
        wanted[path] = _text(tail)  # before the head: a head behind is only a warning
        if snapshot.tail.head:
            wanted[head_path(path)] = snapshot.tail.head
    lock = os.open(path.with_name(TRAIL + ".lock"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)
        for old in [*trail_files(path), head_path(path)]:
            if old not in wanted:
                with contextlib.suppress(FileNotFoundError):
                    old.unlink()
        for file, text in wanted.items():
            if _read_text(file) != text:
                atomic_write(file, text)
    finally:
        os.close(lock)
    return path


def _read_text(file: Path) -> str | None:
    try:
        return file.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None


def _text(lines: Sequence[_Line]) -> str:
    return b"".join(line.raw for line in lines).decode("utf-8", "replace")


# --- keys ------------------------------------------------------------------------------


def _keys(store: TrailStore, files: dict[str, bytes] | None, why_not: str | None) -> MemoryKeyStore:
    from swiftdeploy.runtime.kubernetes.trail import key_secret_name

    where = store.where(key_secret_name(store.manifest), "Secret")
    missing = (
        f"the records' MACs and the head file were not checked here ({why_not}); the "
        "driver checks them before every append"
    )
    return MemoryKeyStore(files or {}, where, missing)


def driver_keys(store: TrailStore) -> MemoryKeyStore:
    """The driver's keys from the Secret, made (and the public key published) on first use."""
    read = store.read_keys()
    files = read.files
    if files is None:
        if read.denied:
            raise AuditError(
                f"the driver cannot read its audit key: {read.why_not}",
                hint="run the driver with its own ServiceAccount (`swiftdeploy kube install`)",
            )
        files = store.create_keys(
            {
                RECORD_KEY_FILE: (secrets.token_hex(KEY_BYTES) + "\n").encode("ascii"),
                SIGNING_KEY_FILE: _new_signing_key(),
            }
        )
    keys = _keys(store, files, None)
    keys.record_key()  # refuses a Secret that does not hold a key, with the reason
    return keys


def _new_signing_key() -> bytes:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    return Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _public_key(keys: KeyStore) -> str | None:
    try:
        return checkpoints.local_public_key(keys)
    except AuditError:
        return None


# --- what an operator reads --------------------------------------------------------------


@dataclass(frozen=True)
class Synced:
    """The cluster's trail copied here, with what is needed to check it."""

    path: Path
    keys: MemoryKeyStore
    has_key: bool
    head: Checkpoint | None  # the driver's signed head (the longest valid one)
    signer: str | None  # the public key it must be signed with
    problems: tuple[Problem, ...] = ()
    empty: bool = True

    @property
    def seen_path(self) -> Path:
        return self.path.with_name(SEEN)


def sync(loaded: LoadedManifest, kube: Kube | None = None) -> Synced:
    """Copy the cluster's trail into `.swiftdeploy/cluster-trail/` (read-only calls)."""
    store = _store(loaded, kube)
    snapshot = store.snapshot()
    read = store.read_keys()
    path = _write_copy(snapshot, loaded.state_dir / CACHE)
    return _synced(store, snapshot, path, _keys(store, read.files, read.why_not), read.files)


def _synced(
    store: TrailStore,
    snapshot: Snapshot,
    path: Path,
    keys: MemoryKeyStore,
    files: dict[str, bytes] | None,
    *,
    pin: bool = True,
) -> Synced:
    problems: list[Problem] = []
    public = snapshot.public_key
    signer = public
    seen = _read_seen(path.with_name(SEEN)) if pin else {}
    pinned = seen.get("public_key")
    if isinstance(pinned, str) and public is not None and public != pinned:
        problems.append(
            Problem.in_file(
                "cluster_key",
                path,
                f"the trail's public key is now {public}, not {pinned}, the one this machine "
                "read first: the keys were replaced, so the signed heads prove nothing (if "
                f"that was meant, remove {path.with_name(SEEN)})",
            )
        )
    if isinstance(pinned, str):
        signer = pinned
    own = _public_key(keys) if files else None
    if own is not None:
        if signer is not None and signer != own:
            problems.append(
                Problem.in_file(
                    "cluster_key",
                    path,
                    f"the published public key {signer} is not the Secret's signing key's ({own})",
                )
            )
        signer = own
    head = None
    tail_head = snapshot.tail.checkpoint if snapshot.tail else None
    for label, text in (("public ConfigMap", snapshot.head), ("tail", tail_head)):
        if not text:
            continue
        found, problem = _signed_head(path, text, signer, label)
        if problem is not None:
            problems.append(problem)
        elif found is not None and (head is None or found.count > head.count):
            head = found
    if not snapshot.empty and head is None and not problems:
        problems.append(
            Problem.in_file(
                "cluster_head",
                path,
                "the cluster's trail has records but no head signed by the driver: its tail "
                "and head were deleted or rewritten",
            )
        )
    return Synced(path, keys, files is not None, head, signer, tuple(problems), snapshot.empty)


def _signed_head(
    path: Path, text: str, signer: str | None, label: str
) -> tuple[Checkpoint | None, Problem | None]:
    copy = path.with_name(HEAD_COPY)
    atomic_write(copy, text)
    try:
        found = checkpoints.load(copy)
    except BadInputError as exc:
        return None, Problem.in_file("cluster_head", copy, f"the {label}'s head: {exc}")
    reason = checkpoints.signature_problem(found, signer)
    if reason:
        return None, Problem.in_file(
            "cluster_head", copy, f"the {label}'s signed head cannot be trusted: {reason}"
        )
    return found, None


def _read_seen(path: Path) -> dict[str, Any]:
    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def _judge(synced: Synced, result: VerifyResult, records: list[Record]) -> VerifyResult:
    """The file checks' result, with what the cluster's signed head and this machine's
    memory say, and what was (not) checked for want of the key."""
    problems = list(synced.problems)
    notes: list[str] = []
    path = synced.path
    count = len(records)
    head = synced.head
    if head is not None:
        named = f"record {head.count} (hash {head.head[:12]}...)"
        if head.count > count:
            problems.append(
                Problem.in_file(
                    "cluster_cut",
                    path,
                    f"the driver's signed head names {named}, but the cluster holds only "
                    f"{count} verified records: records were deleted from the cluster",
                )
            )
        elif records[head.count - 1].get("hash") != head.head:
            problems.append(
                Problem.in_file(
                    "cluster_rewritten",
                    path,
                    f"record {head.count} is not the one the driver's signed head names "
                    f"({named}): the cluster's trail was rewritten",
                )
            )
        else:
            notes.append(
                f"signed head: record {head.count} of {head.ts}, signed by {head.public_key}"
                + (f"; {count - head.count} records after it" if count > head.count else "")
            )
    seen = _read_seen(synced.seen_path)
    seen_count, seen_head = seen.get("count"), seen.get("head")
    if _forgotten(seen_count, seen_head, records):
        problems.append(
            Problem.in_file(
                "cluster_cut",
                path,
                f"this machine verified {seen_count} records (head {str(seen_head)[:12]}...) "
                f"on {seen.get('ts')}; the cluster's trail no longer holds them",
            )
        )
    seal = result.seal_problem
    if seal is not None and seal.code == "no_key" and not synced.has_key:
        result = dataclasses.replace(result, seal_problem=None)
        notes.append(f"MACs: checked by the key holder only: {synced.keys.missing}")
        notes.append("checked here: the hash chain and the driver's signed head (ed25519)")
    elif synced.has_key:
        notes.append(f"MACs and head file checked with the key in {synced.keys.directory}")
    result = dataclasses.replace(result, source_problems=tuple(problems), notes=tuple(notes))
    if result.ok and count and not (isinstance(seen_count, int) and seen_count > count):
        atomic_write(
            synced.seen_path,
            json.dumps(
                {
                    "public_key": synced.signer,
                    "count": count,
                    "head": records[-1].get("hash"),
                    "ts": utc_timestamp(),
                }
            ),
        )
    return result


def _forgotten(count: object, head: object, records: Sequence[Record]) -> bool:
    """Whether records this machine verified before (`seen.json`) are gone."""
    if not isinstance(count, int) or count < 1 or not isinstance(head, str):
        return False
    return count > len(records) or records[count - 1].get("hash") != head


def verify_synced(
    synced: Synced,
    anchor: str | None = None,
    checkpoint: Checkpoint | None = None,
    signer: str | None = None,
) -> VerifyResult:
    """`audit verify` of the copy. `checkpoint`/`signer`: the user's own (default signer:
    this user's signing key), checked as on one host."""
    if checkpoint is not None and signer is None:
        signer = _public_key(KeyStore.from_environment())
    records, _ = read_trail(synced.path, keys=synced.keys)
    result = verify(synced.path, anchor, checkpoint=checkpoint, signer=signer, keys=synced.keys)
    return _judge(synced, result, records)


def read_synced(synced: Synced) -> tuple[list[Record], VerifyResult]:
    """The verified records of the copy, and the result (as `read_trail`)."""
    records, result = read_trail(synced.path, keys=synced.keys)
    return records, _judge(synced, result, records)


# --- what `status` says -----------------------------------------------------------------


def state_warnings(loaded: LoadedManifest, state: State, kube: Kube | None = None) -> list[str]:
    """`status` on Kubernetes: a state the driver refuses (no recorded transition reached
    it), and recorded versions other than the ones the Deployments run; a line each."""
    from swiftdeploy.runtime.kubernetes import objects

    store = _store(loaded, kube)
    warnings = []
    try:
        records, result = read_synced(sync(loaded, store.kube))
    except OperationalError as exc:  # status says what it can without the trail
        warnings.append(f"cannot read the audit trail: {exc.one_line()}")
    else:
        if result.tampered:
            warnings.append(f"the audit trail does not verify: {result.summary()}")
        else:
            transitions = [r for r in records if r.get("kind") == "transition"]
            problem = state_problem(state, transitions)
            if problem is not None:
                warnings.append(f"the driver refuses this state: {problem}")
    running = {}
    for track in ("stable", "canary"):
        found = store.kube.get("Deployment", objects.track_name(loaded.manifest, track))
        template = ((found or {}).get("spec", {}).get("template", {}).get("metadata", {})) or {}
        labels = template.get("labels") or (found or {}).get("metadata", {}).get("labels") or {}
        running[track] = labels.get("version") if found else None
    recorded = {"stable": state.stable_version, "canary": state.canary_version}
    if running != recorded:
        warnings.append(
            f"the state records stable {recorded['stable'] or '-'}, canary "
            f"{recorded['canary'] or '-'}, but the Deployments run stable "
            f"{running['stable'] or '-'}, canary {running['canary'] or '-'} (their version labels)"
        )
    return warnings


# --- the driver's side ---------------------------------------------------------------------


@dataclass
class _Pending:
    seq: int
    hash: str
    ts: str
    raw: bytes


@dataclass
class ClusterSink:
    """The driver's `TrailSink`: mirrors its trail to the cluster (see the module doc)."""

    store: TrailStore
    keys: MemoryKeyStore
    segment_bytes: int = SEGMENT_BYTES
    quiet_s: float = QUIET_S
    clock: Callable[[], float] = time.monotonic
    sealed: int = 0  # records in sealed segments
    tail: list[_Pending] = field(default_factory=list)  # in the tail ConfigMap
    pending: list[_Pending] = field(default_factory=list)  # not yet in the cluster
    tail_version: str | None = None
    last_write: float = float("-inf")
    # the last transitions, for the state check (a few: one may be recorded again)
    transitions: deque[Record] = field(default_factory=lambda: deque(maxlen=16))
    _refused: str | None = None

    # -- starting

    def restore(self, path: Path) -> None:
        """Check the cluster's chain and make the local trail at `path` the same chain:
        rebuilt from the cluster when it has none or is behind it; its extra records
        sent when it is ahead (a driver stopped before mirroring them). AuditError when
        either does not verify, or they differ (then nothing is appended)."""
        snapshot = self.store.snapshot()
        copy = _write_copy(snapshot, path.parent / f".{CACHE}-restore")
        synced = _synced(self.store, snapshot, copy, self.keys, self.keys.files, pin=False)
        cluster, result = read_synced(synced)
        if result.tampered:
            raise AuditError(
                f"the cluster's audit trail does not verify: {result.summary()}",
                hint="see `swiftdeploy audit verify`; the driver appends nothing to a broken trail",
            )
        mine: list[Record] = []
        if trail_files(path):
            mine, local = read_trail(path, keys=self.keys)
            if not local.ok:
                raise AuditError(
                    f"this driver's local audit trail does not verify: {local.summary()}",
                    hint=f"see `swiftdeploy audit verify`; or move {path.parent} aside to "
                    "start again from the cluster's",
                )
        self.sealed = sum(len(lines) for lines in _chain(snapshot)[0])
        self.tail = [self._pending(record) for record in cluster[self.sealed :]]
        self.tail_version = snapshot.tail.resource_version if snapshot.tail else None
        public = _public_key(self.keys)
        if public is not None and snapshot.public_key != public:
            self.store.publish(public, snapshot.head)
        if _is_prefix(mine, cluster):
            if len(mine) < len(cluster) or not trail_files(path):
                self._rebuild(path, cluster)
            self._remember(cluster)
        elif _is_prefix(cluster, mine):
            self.pending = [self._pending(record) for record in mine[len(cluster) :]]
            self._remember(mine)
            self.mirror()
        else:
            raise AuditError(
                f"this driver's local audit trail ({len(mine)} records) and the cluster's "
                f"({len(cluster)}) are different chains",
                hint=f"keep a copy of {path.parent}, then move it aside: the driver continues "
                "the cluster's",
            )

    def _pending(self, record: Record) -> _Pending:
        return _Pending(
            int(record["seq"]),
            str(record["hash"]),
            str(record["ts"]),
            canonical_bytes(record) + b"\n",
        )

    def _remember(self, records: Sequence[Record]) -> None:
        for record in records:
            if record.get("kind") == "transition":
                self.transitions.append(record)

    def _rebuild(self, path: Path, records: Sequence[Record]) -> None:
        for old in [*trail_files(path), head_path(path)]:
            with contextlib.suppress(FileNotFoundError):
                old.unlink()
        if not records:
            return
        private_dir(path.parent)
        atomic_write(path, b"".join(canonical_bytes(r) + b"\n" for r in records).decode("utf-8"))
        last = records[-1]
        write_head(
            path, Head(int(last["seq"]), str(last["hash"]), str(last["ts"])), self.keys.record_key()
        )

    # -- appending

    def appended(self, record: Record) -> None:
        self.pending.append(self._pending(record))
        self._remember([record])
        if record.get("kind") == "decision" and record.get("action") == "hold":
            # A hold acts on nothing: it can wait for the next write, or the server.
            if self.clock() - self.last_write >= self.quiet_s:
                with contextlib.suppress(TransientError):
                    self.mirror()
            return
        self.mirror()

    def mirror(self) -> None:
        """Write what the cluster lacks: seal full segments, then the tail and the head."""
        if not self.pending:
            return
        lines = self.tail + self.pending
        sealed = self.sealed
        while len(lines) > 1 and sum(len(p.raw) for p in lines) > self.segment_bytes:
            size, n = 0, 0
            while n < len(lines) and (n == 0 or size + len(lines[n].raw) <= self.segment_bytes):
                size += len(lines[n].raw)
                n += 1
            chunk, lines = lines[:n], lines[n:]
            self.store.seal(
                sealed + 1, chunk[-1].seq, b"".join(p.raw for p in chunk), self._signed(chunk[-1])
            )
            sealed = chunk[-1].seq
        last = lines[-1]
        head = head_bytes(Head(last.seq, last.hash, last.ts), self.keys.record_key())
        signed = self._signed(last)
        self.tail_version = self.store.write_tail(
            b"".join(p.raw for p in lines), head.decode("ascii"), signed, self.tail_version
        )
        public = _public_key(self.keys)
        if public is not None:
            self.store.publish(public, signed)
        self.sealed, self.tail, self.pending = sealed, lines, []
        self.last_write = self.clock()

    def _signed(self, last: _Pending) -> str:
        trail = f"{self.store.kube.namespace}/{self.store.service} audit trail"
        made = checkpoints.create(self.keys, Path(trail), last.seq, last.hash, utc_timestamp())
        return made.to_text()

    # -- the state

    def state_problem(self, state: State) -> str | None:
        """Why `state` is not one a recorded transition reached (None when it is)."""
        return state_problem(state, list(self.transitions))

    def refuse(self, state: State, recorder: Recorder) -> str | None:
        """Check `state`; when no recorded transition reached it, record the refusal
        (once per refused state) and return the one line to say. The driver then does
        not act on the state."""
        problem = self.state_problem(state)
        if problem is None:
            self._refused = None
            return None
        said = f"refused the state in the cluster: {problem}"
        if said != self._refused:
            recorder.record(
                REFUSED,
                rollout_id=state.rollout_id,
                phase=state.phase.value,
                stable_version=state.stable_version,
                canary_version=state.canary_version,
                reason=problem,
            )
            recorder.flush()
            self._refused = said
        return said


def _is_prefix(short: Sequence[Record], long: Sequence[Record]) -> bool:
    if len(short) > len(long):
        return False
    return not short or long[len(short) - 1].get("hash") == short[-1].get("hash")


def open_cluster_audit_log(
    loaded: LoadedManifest,
    kube: Kube | None = None,
    command: Sequence[str] | None = None,
    *,
    segment_bytes: int = SEGMENT_BYTES,
    quiet_s: float = QUIET_S,
) -> AuditLog:
    """The driver's audit log on Kubernetes: keyed from the Secret (made on first use),
    its local file rebuilt from the cluster's chain when it has none, and every record
    mirrored to the cluster. `log.sink` is the ClusterSink (`mirror()` when stopping,
    `refuse(state, recorder)` before acting on a state)."""
    store = _store(loaded, kube)
    keys = driver_keys(store)
    sink = ClusterSink(store, keys, segment_bytes=segment_bytes, quiet_s=quiet_s)
    settings = audit_settings(loaded)
    path = driver_trail(loaded)
    sink.restore(path)
    return AuditLog(
        path, settings.max_bytes, settings.secrets, command=command, keys=keys, sink=sink
    )


def use_cluster_trail(fleet: Fleet) -> ClusterSink:
    """Make the driver's fleet record to the cluster's trail (`open_cluster_audit_log`)
    rather than a local one keyed from this user's config directory. The driver then
    calls `sink.refuse(state, fleet.recorder)` on every state it loads before acting on
    it, and `sink.mirror()` when it stops."""
    log = open_cluster_audit_log(fleet.loaded)
    fleet.recorder = AuditRecorder(log)
    assert isinstance(log.sink, ClusterSink)
    return log.sink
