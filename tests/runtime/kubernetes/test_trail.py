"""One audit trail per service in the cluster (issue 21, case 2's record) and a state an
editor cannot forge (case 7), on the real test control plane.

The driver is the in-process `open_cluster_audit_log` with its ServiceAccount's token
(what it sees inside a pod); each "machine" is a project directory of its own with its
own HOME and config directory; operators run the real CLI as `deployer`, bound only to
the operators' Role.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from bench.support.kube import KubeCluster
from bench.support.project import SWIFTDEPLOY
from kubernetes import client

from swiftdeploy.audit.log import ENVELOPE, AuditLog
from swiftdeploy.audit.recorder import AuditRecorder
from swiftdeploy.audit.statecheck import REFUSED
from swiftdeploy.commands.cluster_trail import (
    ClusterSink,
    driver_trail,
    open_cluster_audit_log,
    use_cluster_trail,
)
from swiftdeploy.commands.context import audit_settings, open_fleet
from swiftdeploy.errors import AuditError
from swiftdeploy.manifest import LoadedManifest, load_manifest
from swiftdeploy.runtime.kubernetes import objects, rbac
from swiftdeploy.runtime.kubernetes.api import open_kube
from swiftdeploy.runtime.kubernetes.trail import (
    key_secret_name,
    public_name,
    segment_name,
    selector,
    tail_name,
)
from swiftdeploy.state import Phase, State
from tests.support.inputs import counts
from tests.support.trails import Cli

SERVICE = "demo"
RID = "r-trail-v2"
VERSIONS = {"stable": "v1", "canary": "v2"}
MANIFEST = """\
apiVersion: swiftdeploy/v1
runtime: kubernetes
service:
  name: {service}
  image: registry.example/demo:{{version}}
  port: 8080
  version: v1
kubernetes:
  namespace: {namespace}
metrics:
  provider: prometheus
  prometheus:
    url: http://127.0.0.1:9
"""


# --- identities ---------------------------------------------------------------------------


def _kubeconfig(cluster: KubeCluster, path: Path, user: str, token: str, namespace: str) -> Path:
    admin = yaml.safe_load(cluster.admin_kubeconfig.read_text())
    document = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": admin["clusters"],
        "users": [{"name": user, "user": {"token": token}}],
        "contexts": [
            {
                "name": user,
                "context": {"cluster": admin["clusters"][0]["name"], "user": user,
                            "namespace": namespace},
            }
        ],
        "current-context": user,
    }  # fmt: skip
    path.write_text(yaml.safe_dump(document))
    path.chmod(0o600)
    return path


def driver_kubeconfig(cluster: KubeCluster, loaded: LoadedManifest, directory: Path) -> Path:
    """The driver's ServiceAccount, bound to the driver's Role, and a kubeconfig with
    its token, as a pod has it."""
    manifest = loaded.manifest
    namespace = manifest.kubernetes.namespace
    core = client.CoreV1Api(cluster.api)
    rbac_api = client.RbacAuthorizationV1Api(cluster.api)
    account = rbac.driver_service_account(manifest)
    core.create_namespaced_service_account(namespace, account)
    role = rbac.driver_role(manifest)
    rbac_api.create_namespaced_role(namespace, role)
    subject = rbac.subject(manifest, "ServiceAccount", account["metadata"]["name"])
    rbac_api.create_namespaced_role_binding(namespace, rbac.role_binding(manifest, role, [subject]))
    token = core.create_namespaced_service_account_token(
        account["metadata"]["name"],
        namespace,
        client.AuthenticationV1TokenRequest(
            spec=client.V1TokenRequestSpec(audiences=[], expiration_seconds=3600)
        ),
    ).status.token
    return _kubeconfig(cluster, directory / "driver.yaml", "driver", token, namespace)


def bind(cluster: KubeCluster, namespace: str, user: str, role: dict[str, Any] | str) -> Path:
    """`user` bound to a Role (given whole) or a built-in ClusterRole (by name)."""
    rbac_api = client.RbacAuthorizationV1Api(cluster.api)
    if isinstance(role, str):
        ref = {"apiGroup": rbac.RBAC_GROUP, "kind": "ClusterRole", "name": role}
    else:
        rbac_api.create_namespaced_role(namespace, role)
        ref = {"apiGroup": rbac.RBAC_GROUP, "kind": "Role", "name": role["metadata"]["name"]}
    rbac_api.create_namespaced_role_binding(
        namespace,
        {
            "apiVersion": f"{rbac.RBAC_GROUP}/v1",
            "kind": "RoleBinding",
            "metadata": {"name": f"{user}-{ref['name']}"},
            "roleRef": ref,
            "subjects": [{"kind": "User", "name": user, "apiGroup": rbac.RBAC_GROUP}],
        },
    )
    return cluster.user_kubeconfig(user, namespace)


# --- machines -------------------------------------------------------------------------------


class Machine:
    """A checkout of the project on a machine of its own: its own HOME, config directory
    and `.swiftdeploy/`."""

    def __init__(self, root: Path, namespace: str) -> None:
        self.root = root
        self.home = root.parent / f"{root.name}-home"
        self.home.mkdir(mode=0o700)
        subprocess.run([SWIFTDEPLOY, "init", str(root)], check=True, capture_output=True,
                       env=self.env(None))  # fmt: skip
        self.manifest = root / "swiftdeploy.yaml"
        self.manifest.write_text(MANIFEST.format(service=SERVICE, namespace=namespace))
        self.loaded = load_manifest(self.manifest)

    def env(self, kubeconfig: Path | None) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("SWIFTDEPLOY_")}
        env.update(HOME=str(self.home), XDG_CONFIG_HOME=str(self.home / ".config"))
        if kubeconfig is not None:
            env["KUBECONFIG"] = str(kubeconfig)
        return env

    def cli(self, kubeconfig: Path, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [SWIFTDEPLOY, *args, "-f", str(self.manifest)],
            capture_output=True,
            text=True,
            timeout=120,
            cwd=self.root,
            env=self.env(kubeconfig),
            check=False,
        )

    def driver(
        self, monkeypatch: pytest.MonkeyPatch, *, segment_bytes: int = 6000, quiet_s: float = 0.0
    ) -> tuple[Cli, ClusterSink]:
        """The driver's audit log on this machine (its config dir in the environment,
        as the driver process would have it)."""
        monkeypatch.setenv("HOME", str(self.home))
        monkeypatch.setenv("XDG_CONFIG_HOME", str(self.home / ".config"))
        log = open_cluster_audit_log(
            self.loaded, open_kube(self.loaded), ["swiftdeploy", "drive", "--controller"],
            segment_bytes=segment_bytes, quiet_s=quiet_s,
        )  # fmt: skip
        assert isinstance(log.sink, ClusterSink)
        cli = Cli.__new__(Cli)
        cli.recorder = AuditRecorder(log)
        return cli, log.sink


def records(path: Path) -> list[dict[str, Any]]:
    files = sorted(path.parent.glob(path.name + ".[0-9]*"), key=lambda p: int(p.suffix[1:]))
    return [json.loads(line) for f in [*files, path] if f.exists()
            for line in f.read_text().splitlines()]  # fmt: skip


def start(cli: Cli) -> None:
    cli.command(None)
    cli.transition(RID, "idle", "progressing", "rollout of v2 started", **VERSIONS,
                   step_index=0, weight=0)  # fmt: skip
    cli.transition(RID, "progressing", "progressing", "step 1: canary weight 10%",
                   **VERSIONS, step_index=0, weight=10)  # fmt: skip


def look(cli: Cli, n: int) -> str:
    made = cli.look(RID, counts(60 * n), counts(540 * n, n), elapsed_s=8.0 * n, weight=10)
    return str(made.decision.verdict)


def finish(cli: Cli) -> None:
    cli.transition(RID, "progressing", "promoting", "promoting v2 to stable", **VERSIONS,
                   step_index=0, weight=100)  # fmt: skip
    cli.transition(RID, "promoting", "promoted", "v2 promoted", stable="v2", canary=None,
                   step_index=None, weight=0)  # fmt: skip


@pytest.fixture
def machines(
    kube_cluster: KubeCluster,
    kube_namespace: str,
    tmp_path: Path,
    short_tmp: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> list[Machine]:
    """Machines a, b and c; the in-process drivers use the driver's ServiceAccount. Under
    a short directory: a project's supervisor socket must fit a unix socket's path (the
    tests' own directories carry their long names)."""
    found = [Machine(short_tmp / name, kube_namespace) for name in ("a", "b", "c")]
    driver = driver_kubeconfig(kube_cluster, found[0].loaded, tmp_path)
    monkeypatch.setenv("KUBECONFIG", str(driver))
    return found


def trail_objects(cluster: KubeCluster, namespace: str) -> list[client.V1ConfigMap]:
    core = client.CoreV1Api(cluster.api)
    found = core.list_namespaced_config_map(
        namespace, label_selector=f"swiftdeploy.dev/service={SERVICE},swiftdeploy.dev/part=trail"
    ).items
    return list(found)


# --- one chain, three machines ------------------------------------------------------------


def test_one_chain_written_by_two_machines_is_read_whole_by_a_third(
    kube_cluster: KubeCluster,
    kube_namespace: str,
    machines: list[Machine],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    a, b, c = machines
    operator = bind(kube_cluster, kube_namespace, "deployer", rbac.operator_role(a.loaded.manifest))

    # Given machine A's driver starts the rollout and is killed after a few looks
    first, _ = a.driver(monkeypatch)
    start(first)
    assert [look(first, n) for n in (1, 2)] == ["hold", "hold"]
    a_records = records(driver_trail(a.loaded))
    del first

    # When machine B's driver (no local trail) takes over and promotes
    b_trail = driver_trail(b.loaded)
    assert not b_trail.exists()
    second, _ = b.driver(monkeypatch)
    # the chain goes on from A's last record: never a new genesis
    assert records(b_trail) == a_records
    for n in (3, 4, 5):
        look(second, n)
    finish(second)
    b_records = records(b_trail)
    assert b_records[: len(a_records)] == a_records
    assert [r["seq"] for r in b_records] == list(range(1, len(b_records) + 1))

    # Then the cluster holds it as sealed, immutable segments and a tail
    found = trail_objects(kube_cluster, kube_namespace)
    sealed = [cm for cm in found if cm.metadata.labels["swiftdeploy.dev/trail"] == "sealed"]
    assert len(sealed) >= 2, [cm.metadata.name for cm in found]
    assert all(cm.immutable for cm in sealed)
    assert {cm.metadata.name for cm in found} >= {tail_name(a.loaded.manifest)}

    # and machine C, an operator without the Secret, reads ONE chain with every record
    done = c.cli(operator, "audit", "verify")
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"audit trail ok: {len(b_records)} records" in done.stdout
    assert "MACs: checked by the key holder only" in done.stdout
    assert "only the driver's ServiceAccount may read" in done.stdout
    assert f"signed head: record {len(b_records)}" in done.stdout
    assert records(c.loaded.state_dir / "cluster-trail" / "history.jsonl") == b_records
    why = c.cli(operator, "audit", "why")
    assert why.returncode == 0, why.stdout + why.stderr
    assert RID in why.stdout, why.stdout
    assert "promoted" in why.stdout, why.stdout
    exported = c.cli(operator, "audit", "export", "--format", "json")
    assert exported.returncode == 0, exported.stderr
    assert [r["seq"] for r in json.loads(exported.stdout)] == [r["seq"] for r in b_records]
    report = c.cli(operator, "audit", "report", "--out", str(tmp_path / "report"))
    assert report.returncode == 0, report.stderr
    assert RID in (tmp_path / "report" / "audit_report.md").read_text()
    # an operator's own checkpoint of the cluster's head, checked later from the cluster
    made = c.cli(operator, "audit", "checkpoint", "-o", str(tmp_path / "head.json"))
    assert made.returncode == 0, made.stderr
    assert json.loads((tmp_path / "head.json").read_text())["count"] == len(b_records)
    checked = c.cli(operator, "audit", "verify", "--checkpoint", str(tmp_path / "head.json"))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "checkpoint of " in checked.stdout
    events = c.cli(operator, "events")
    assert events.returncode == 0, events.stderr
    told = [json.loads(line) for line in events.stdout.splitlines()]
    assert {e["subject"] for e in told} == {RID}
    assert told[-1]["type"] == "dev.swiftdeploy.rollout.promoted.v1", told[-1]
    # the operator's Role cannot read the key; neither can the built-in `view` role
    for kubeconfig in (operator, bind(kube_cluster, kube_namespace, "viewer", "view")):
        core = client.CoreV1Api(kube_cluster.api_client(kubeconfig))
        with pytest.raises(client.ApiException) as refused:
            core.read_namespaced_secret(key_secret_name(a.loaded.manifest), kube_namespace)
        assert refused.value.status == 403

    # and with the key (an admin), every MAC and the head file are checked too
    admin = c.cli(kube_cluster.admin_kubeconfig, "audit", "verify")
    assert admin.returncode == 0, admin.stdout + admin.stderr
    assert "MACs and head file checked with the key in Secret" in admin.stdout


def test_a_driver_restarted_goes_on_with_the_one_chain(
    kube_cluster: KubeCluster,
    kube_namespace: str,
    machines: list[Machine],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    a, b, c = machines
    operator = bind(kube_cluster, kube_namespace, "deployer", rbac.operator_role(a.loaded.manifest))
    # a CLI on A wrote the project's own local trail, with its user's key: no matter
    AuditLog(audit_settings(a.loaded).path, 10_000_000).append("command", rollout_id=None)
    first, _ = a.driver(monkeypatch)
    start(first)
    second, sink = b.driver(monkeypatch)
    look(second, 1)
    cluster = records(driver_trail(b.loaded))

    # A's driver restarted with its older local trail: rebuilt as the cluster's, then on
    third, _ = a.driver(monkeypatch)
    a_trail = driver_trail(a.loaded)
    assert records(a_trail) == cluster
    finish(third)
    assert records(a_trail)[: len(cluster)] == cluster

    # records a driver wrote here but never sent (killed between the two) are sent
    plain = AuditLog(a_trail, 10_000_000, keys=sink.keys, command=["swiftdeploy", "drive"])
    plain.append("command", rollout_id=RID)
    unsent = records(a_trail)
    a.driver(monkeypatch)
    done = c.cli(operator, "audit", "verify")
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"audit trail ok: {len(unsent)} records" in done.stdout

    # another chain, with the same key, is never merged: the driver refuses to start
    d = Machine(a.root.parent / "d", kube_namespace)
    other = AuditLog(driver_trail(d.loaded), 10_000_000,
                     keys=sink.keys)  # fmt: skip
    other.append("command", rollout_id="r-elsewhere")
    with pytest.raises(AuditError, match="different chains"):
        d.driver(monkeypatch)


def test_a_driver_killed_between_sealing_a_segment_and_its_tail_loses_nothing(
    kube_cluster: KubeCluster,
    kube_namespace: str,
    machines: list[Machine],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    a, b, c = machines
    operator = bind(kube_cluster, kube_namespace, "deployer", rbac.operator_role(a.loaded.manifest))
    cli, sink = a.driver(monkeypatch, segment_bytes=1_000_000)
    start(cli)
    look(cli, 1)
    # the tail's records sealed as a segment, and the driver killed before the tail
    # was written without them: both ConfigMaps now hold them
    sealed = [p.raw for p in sink.tail]
    sink.store.seal(1, sink.tail[-1].seq, b"".join(sealed), sink._signed(sink.tail[-1]))
    done = c.cli(operator, "audit", "verify")
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"audit trail ok: {len(sealed)} records in 2 file(s)" in done.stdout
    # the next driver goes on from there, and sealing again is no conflict
    second, _ = b.driver(monkeypatch, segment_bytes=1_000_000)
    finish(second)
    done = c.cli(operator, "audit", "verify")
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"audit trail ok: {len(sealed) + 2} records" in done.stdout
    sink.store.seal(1, sink.tail[-1].seq, b"".join(sealed), sink._signed(sink.tail[-1]))


def test_holds_are_written_to_the_cluster_at_most_every_few_seconds(
    kube_cluster: KubeCluster,
    kube_namespace: str,
    machines: list[Machine],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    a, _, _ = machines
    cli, sink = a.driver(monkeypatch, quiet_s=3.0)
    start(cli)
    look(cli, 1)
    trail = driver_trail(a.loaded)
    hold = records(trail)[-1]
    assert hold["action"] == "hold"
    fields = {k: v for k, v in hold.items() if k not in ENVELOPE}
    calls = sink.store.kube.calls
    began = time.monotonic()
    for _ in range(20):  # full hold records, as fast as they come
        cli.recorder.log.append("decision", **fields)
    elapsed = time.monotonic() - began
    mirrors = (sink.store.kube.calls - calls) / 2  # each: the tail and the signed head
    assert mirrors <= 1 + elapsed // 3.0, (mirrors, elapsed)
    assert len(sink.pending) > 0
    sink.mirror()  # what the driver does when it stops
    assert not sink.pending
    tail = client.CoreV1Api(kube_cluster.api).read_namespaced_config_map(
        tail_name(a.loaded.manifest), kube_namespace
    )
    last = tail.data["records.jsonl"].splitlines()[-1]
    assert json.loads(last)["seq"] == records(trail)[-1]["seq"]


# --- tampering -------------------------------------------------------------------------------


def _recreate(
    core: client.CoreV1Api, namespace: str, cm: client.V1ConfigMap, data: dict[str, str]
) -> None:
    try:
        core.delete_namespaced_config_map(cm.metadata.name, namespace)
    except client.ApiException as exc:
        if exc.status != 404:
            raise
    body = client.V1ConfigMap(
        metadata=client.V1ObjectMeta(
            name=cm.metadata.name, labels=cm.metadata.labels, annotations=cm.metadata.annotations
        ),
        data=data,
        immutable=cm.immutable,
    )
    core.create_namespaced_config_map(namespace, body)


def test_a_deleted_or_edited_segment_and_a_cut_tail_are_caught(
    kube_cluster: KubeCluster,
    kube_namespace: str,
    machines: list[Machine],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    a, _, c = machines
    operator = bind(kube_cluster, kube_namespace, "deployer", rbac.operator_role(a.loaded.manifest))
    editor = bind(kube_cluster, kube_namespace, "editor", "edit")
    cli, sink = a.driver(monkeypatch)
    start(cli)
    for n in range(1, 6):
        look(cli, n)
    finish(cli)
    assert c.cli(operator, "audit", "verify").returncode == 0
    core = client.CoreV1Api(kube_cluster.api_client(editor))  # a namespace editor
    manifest = a.loaded.manifest
    segments = sorted(
        (cm for cm in trail_objects(kube_cluster, kube_namespace)
         if cm.metadata.labels["swiftdeploy.dev/trail"] == "sealed"),
        key=lambda cm: cm.metadata.name,
    )  # fmt: skip
    assert len(segments) >= 2
    second = segments[1]
    original = dict(second.data)

    # an edited record in a sealed segment (immutable: deleted and made again)
    lines = original["records.jsonl"].splitlines(keepends=True)
    lines[0] = lines[0].replace(f'"rollout_id":"{RID}"', '"rollout_id":"r-forged"', 1)
    assert lines[0] != original["records.jsonl"].splitlines(keepends=True)[0]
    _recreate(core, kube_namespace, second, {**original, "records.jsonl": "".join(lines)})
    done = c.cli(operator, "audit", "verify")
    assert done.returncode == 1, done.stdout
    assert "does not match its hash" in done.stdout + done.stderr
    assert c.cli(operator, "audit", "why").returncode != 0  # nothing told from a broken trail

    # a deleted segment
    core.delete_namespaced_config_map(second.metadata.name, kube_namespace)
    done = c.cli(operator, "audit", "verify")
    assert done.returncode == 1, done.stdout
    assert "audit trail broken" in done.stdout + done.stderr

    # the segment back as it was: the chain verifies again
    _recreate(core, kube_namespace, second, original)
    done = c.cli(operator, "audit", "verify")
    assert done.returncode == 0, done.stdout + done.stderr

    # the tail deleted: the signed head (and what this machine saw) name the records cut
    core.delete_namespaced_config_map(tail_name(manifest), kube_namespace)
    done = c.cli(operator, "audit", "verify")
    assert done.returncode == 1, done.stdout
    assert "records were deleted from the cluster" in done.stdout + done.stderr
    # a fresh machine, which never saw the trail, is told too (the public head)
    fresh = Machine(a.root.parent / "d", kube_namespace)
    done = fresh.cli(operator, "audit", "verify")
    assert done.returncode == 1
    assert "records were deleted" in done.stdout + done.stderr
    # and the driver appends no more to a trail cut under it
    with pytest.raises(AuditError, match="changed or deleted by someone other than the driver"):
        cli.transition(RID, "promoted", "promoted", "again", stable="v2", canary=None,
                       step_index=None, weight=0)  # fmt: skip
    assert public_name(manifest)
    assert segment_name(manifest, 1).endswith("0000000001")
    assert selector(manifest).startswith("swiftdeploy.dev/service=demo")
    del sink


# --- the state an editor cannot forge ----------------------------------------------------------


def test_a_state_forged_by_an_editor_is_refused_with_its_reason(
    kube_cluster: KubeCluster,
    kube_namespace: str,
    machines: list[Machine],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    a, b, c = machines
    # Given the driver's fleet on the cluster's trail, a rollout held at its step: its
    # transitions recorded, then saved (Fleet.transition)
    monkeypatch.setenv("HOME", str(a.home))
    fleet = open_fleet(a.loaded, lambda _: None)
    sink = use_cluster_trail(fleet)
    state = fleet.transition(
        State(stable_version="v1"), "rollout of v2 started", "started",
        phase=Phase.PROGRESSING, rollout_id=RID, canary_version="v2", step_index=0,
    )  # fmt: skip
    held = fleet.transition(
        state.model_copy(update={"canary_weight": 10}), "held at max_duration", "held",
        phase=Phase.PAUSED, pause_kind="held",
    )  # fmt: skip

    assert sink.refuse(fleet.store.load(), fleet.recorder) is None

    # When a user with the built-in `edit` role rewrites the phase to promoting
    editor = client.CoreV1Api(
        kube_cluster.api_client(bind(kube_cluster, kube_namespace, "editor", "edit"))
    )
    forged = held.model_copy(update={"phase": Phase.PROMOTING, "stable_version": "v9-forged"})
    editor.patch_namespaced_config_map(
        objects.state_name(a.loaded.manifest), kube_namespace,
        {"data": {"state.json": forged.model_dump_json()}},
    )  # fmt: skip

    # Then a driver started afresh elsewhere (B) refuses it, in one line, and records it
    monkeypatch.setenv("HOME", str(b.home))
    fresh = open_fleet(b.loaded, lambda _: None)
    sink_b = use_cluster_trail(fresh)
    said = sink_b.refuse(fresh.store.load(), fresh.recorder)
    assert said is not None
    assert "\n" not in said
    assert "phase promoting" in said, said
    assert "left phase paused" in said, said
    assert "no recorded transition reached it" in said
    # once per refused state, not at every look
    assert sink_b.refuse(fresh.store.load(), fresh.recorder) == said
    refusals = [r for r in records(driver_trail(b.loaded))
                if r["kind"] == REFUSED]  # fmt: skip
    assert len(refusals) == 1
    assert refusals[0]["phase"] == "promoting"
    assert refusals[0]["reason"] in said

    # and an operator's `status` shows the refusal, and versions other than the
    # Deployments' (which run the held rollout's stable v1 and canary v2)
    apps = client.AppsV1Api(kube_cluster.api)
    for track, version in (("stable", "v1"), ("canary", "v2")):
        apps.create_namespaced_deployment(
            kube_namespace, objects.deployment(a.loaded.manifest, track, version, 1)
        )
    operator = bind(kube_cluster, kube_namespace, "deployer", rbac.operator_role(a.loaded.manifest))
    shown = c.cli(operator, "status", "--window", "0")
    assert shown.returncode == 0, shown.stdout + shown.stderr
    warnings = [line for line in shown.stdout.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 2, shown.stdout
    assert "the driver refuses this state" in warnings[0]
    assert "phase promoting" in warnings[0]
    assert (
        "stable v9-forged, canary v2, but the Deployments run stable v1, canary v2" in (warnings[1])
    )

    # and the state put back as the driver left it is taken again
    editor.patch_namespaced_config_map(
        objects.state_name(a.loaded.manifest), kube_namespace,
        {"data": {"state.json": held.model_dump_json()}},
    )  # fmt: skip
    assert sink_b.refuse(fresh.store.load(), fresh.recorder) is None
