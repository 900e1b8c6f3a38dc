"""The driver in the cluster (commands/driver.py `drive_controller`, the requests in
runtime/kubernetes/control.py): operators on two machines, each with its own HOME and
checkout, start, steer and follow one rollout through the API server as the user
`deployer` bound only to the operators' Role; the driver runs with its ServiceAccount's
token, as in its pod."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest
import yaml
from bench.support.cluster_driver import (
    DRIVER_ACCOUNT,
    lease_holder,
    pod_machine,
    prepare,
    reap,
    start_driver,
    wait_for,
)
from bench.support.kube import KubeCluster
from bench.support.kubeproject import QUICK_POLICY, SERVICE, KubeProject, manifest_text
from kubernetes import client, watch

from swiftdeploy.commands.driver_image import build_driver_image
from swiftdeploy.commands.kube_install import TOKEN_DIR
from swiftdeploy.ports import free_port
from swiftdeploy.runtime.kubernetes.lease import LEASE_S
from tests.support.docker import engine
from tests.support.kube import FakeDataPlane
from tests.support.kube_faults import api_server_stopped

STABLE, CANARY = f"{SERVICE}-stable", f"{SERVICE}-canary"


def _reader(cluster: KubeCluster, namespace: str, root: Path) -> KubeProject:
    """Reads the route and the Deployments back as the admin."""
    return KubeProject(root, namespace, cluster.admin_kubeconfig, cluster)


def test_a_rollout_whose_driver_is_killed_is_resumed_by_the_next_and_steered_from_elsewhere(
    kube_cluster: KubeCluster, kube_namespace: str, short_tmp: Path
) -> None:
    plane = FakeDataPlane(kube_cluster, kube_namespace, SERVICE, rate_rps=200)
    drivers = []
    following = None
    try:
        # Given v1 deployed by the platform, and the driver running in the cluster
        text = manifest_text(
            kube_namespace,
            plane.prometheus_url,
            steps="[{weight: 50}]",
            # a step that cannot pass on its own while the drivers change hands, however
            # busy the machine (a clean-clone run saw it promoted before B could pause
            # it); B's `promote` ends it
            min_duration="300s",
            max_duration="400s",
            extra=QUICK_POLICY,
        )
        a, b, platform = prepare(kube_cluster, kube_namespace, short_tmp, text)
        read = _reader(kube_cluster, kube_namespace, a.root)
        platform.cli("deploy")
        first = start_driver(pod_machine(short_tmp / "pod1", platform))
        drivers.append(first)
        wait_for("the driver's Lease", lambda: f"/{first.pid}/" in lease_holder(
            kube_cluster, kube_namespace), driver=first)  # fmt: skip

        # When machine A starts a rollout of v2 and follows it
        following = a.popen("rollout", "v2")
        wait_for("step 1 at 50%", lambda: read.weights().get(CANARY) == 50, driver=first)

        # Then machine B's status names the driver in the cluster
        status = b.cli("status", "--window", "0").stdout
        assert "driven by the driver in the cluster" in status, status
        assert f"/{first.pid}/" in status, status

        # When the driver is killed mid-step and a new pod of it starts
        first.kill()
        second = start_driver(pod_machine(short_tmp / "pod2", platform))
        drivers.append(second)

        # Then the new driver takes the Lease and carries the rollout on
        wait_for("the new driver's Lease", lambda: f"/{second.pid}/" in lease_holder(
            kube_cluster, kube_namespace), timeout=60, driver=second)  # fmt: skip
        wait_for(
            "B's status to name the new driver",
            lambda: f"/{second.pid}/" in b.cli("status", "--window", "0").stdout,
            driver=second,
        )

        # When B pauses and resumes it (requests through the API server)
        paused = b.cli("pause", "--reason", "looking at a dashboard", timeout=90)
        assert "paused at step 1" in paused.stdout, paused.stdout + paused.stderr
        resumed = b.cli("resume", "--detach", timeout=90)
        assert resumed.returncode == 0, resumed.stderr
        # and promotes the healthy canary before its step's min_duration
        b.cli("promote", timeout=90)

        # Then it is promoted, and A's follower, which never drove anything, ends with
        # the outcome and exit 0
        out, _ = following.communicate(timeout=180)
        assert following.returncode == 0, out
        assert "promoted" in out
        assert read.image("stable") == "registry.example/demo:v2"
        assert read.weights() == {STABLE: 100}
        read.wait_for("the canary Deployment to go", lambda: read.deployment("canary") is None)

        # and the new driver goes on idling between rollouts, holding the service
        assert second.process.poll() is None, second.output()
        assert f"/{second.pid}/" in lease_holder(kube_cluster, kube_namespace)
    finally:
        reap(following)
        for driver in drivers:
            driver.stop()
        plane.close()


def test_abort_from_another_machine_takes_the_canary_to_0_percent(
    kube_cluster: KubeCluster, kube_namespace: str, short_tmp: Path
) -> None:
    # Given v1 deployed and no driver installed yet (a Prometheus nothing answers: every
    # look holds)
    dead = f"http://127.0.0.1:{free_port()}"
    text = manifest_text(kube_namespace, dead, max_duration="120s")
    a, b, platform = prepare(kube_cluster, kube_namespace, short_tmp, text)
    read = _reader(kube_cluster, kube_namespace, a.root)
    platform.cli("deploy")

    # When A starts a rollout with no driver to run it
    started = time.monotonic()
    refused = a.cli("rollout", "v2", check=False)

    # Then it is refused at once in one line that says how to get a driver
    assert refused.returncode == 1, refused.stderr
    line = refused.stderr.strip()
    assert len(line.splitlines()) == 1, line
    assert f"no driver runs for {SERVICE} in namespace {kube_namespace}" in line
    assert "swiftdeploy kube install" in line
    assert time.monotonic() - started < 30
    assert read.deployment("canary") is None

    driver = start_driver(pod_machine(short_tmp / "pod", platform))
    try:
        wait_for("the driver's Lease", lambda: f"/{driver.pid}/" in lease_holder(
            kube_cluster, kube_namespace), driver=driver)  # fmt: skip

        # When A starts it with the driver running, and detaches
        detached = a.cli("rollout", "v2", "--detach")
        assert "goes on under its driver" in detached.stdout, detached.stdout
        wait_for("step 1 at 10%", lambda: read.weights().get(CANARY) == 10, driver=driver)

        # When B aborts it: timed from B's command to the route giving the canary 0%
        started = time.monotonic()
        aborting = b.popen("abort", "--reason", "pager went off")
        wait_for("the canary at 0%", lambda: read.weights().get(CANARY, 0) == 0, 15, driver)
        took = time.monotonic() - started
        out, err = aborting.communicate(timeout=60)

        # Then the canary had 0% (the goal, within 5 s, is bench/kube_driver.py's
        # to measure: 1.14 s median; this machine at load 6 per core once took 5.45 s),
        # the abort was the person's, answered by the driver; the canary's Deployment
        # goes, and the driver still holds the service
        assert aborting.returncode == 0, err
        assert "aborted by" in out, out
        assert "0%" in out, out
        read.wait_for("the canary Deployment to go", lambda: read.deployment("canary") is None)
        status = json.loads(b.cli("status", "--json", "--window", "0").stdout)
        assert status["phase"] == "rolled-back", status
        assert f"/{driver.pid}/" in status["driver"]["holder"], status
        print(f"abort from another machine to the canary's 0%: {took:.2f}s")
    finally:
        driver.stop()
    # A driver stopped with SIGTERM records why in its heartbeat: B's status says none runs
    status = b.cli("status", "--window", "0").stdout
    assert "no driver" in status, status


def test_kube_install_applies_the_driver_and_prints_the_same_for_gitops(
    kube_cluster: KubeCluster, kube_namespace: str, short_tmp: Path
) -> None:
    text = manifest_text(kube_namespace, f"http://127.0.0.1:{free_port()}")
    a, _, _ = prepare(kube_cluster, kube_namespace, short_tmp, text)
    admin = a.env() | {"KUBECONFIG": str(kube_cluster.admin_kubeconfig)}

    # When the YAML is printed, then it is the driver's objects, nothing applied
    printed = subprocess.run(
        a.argv("kube", "install", "--print"), capture_output=True, text=True, env=admin, check=True
    ).stdout
    documents = [d for d in yaml.safe_load_all(printed) if d]
    kinds = [(d["kind"], d["metadata"]["name"]) for d in documents]
    assert kinds == [
        ("ServiceAccount", DRIVER_ACCOUNT),
        ("Role", DRIVER_ACCOUNT),
        ("RoleBinding", DRIVER_ACCOUNT),
        ("ConfigMap", f"{DRIVER_ACCOUNT}-project"),
        ("Deployment", DRIVER_ACCOUNT),
    ]
    apps = client.AppsV1Api(kube_cluster.api)
    assert not apps.list_namespaced_deployment(kube_namespace).items

    # When it is applied (as a namespace admin)
    done = subprocess.run(
        a.argv("kube", "install"), capture_output=True, text=True, env=admin, check=False
    )
    assert done.returncode == 0, done.stderr
    assert f"applied Deployment {kube_namespace}/{DRIVER_ACCOUNT}" in done.stdout

    # Then the Deployment runs `drive --controller` as the driver's ServiceAccount, with
    # the manifest and policies from the ConfigMap, and a second apply changes nothing
    deployment = apps.read_namespaced_deployment(DRIVER_ACCOUNT, kube_namespace)
    pod = deployment.spec.template.spec
    assert pod.service_account_name == DRIVER_ACCOUNT
    assert "drive --controller" in " ".join(pod.containers[0].command)
    data = (
        client.CoreV1Api(kube_cluster.api)
        .read_namespaced_config_map(f"{DRIVER_ACCOUNT}-project", kube_namespace)
        .data
    )
    assert data["swiftdeploy.yaml"] == a.manifest.read_text()
    assert "policies.canary.rego" in data
    assert "tokenFile" in data["kubeconfig"]
    generation = deployment.metadata.generation
    again = subprocess.run(
        a.argv("kube", "install"), capture_output=True, text=True, env=admin, check=False
    )
    assert again.returncode == 0, again.stderr
    assert (
        apps.read_namespaced_deployment(DRIVER_ACCOUNT, kube_namespace).metadata.generation
        == generation
    )


# Its own waits add up past the suite's 300 s: a 30 s outage, the API server's restart,
# then up to 240 s for the follower (a loaded clean-clone run was cut at 300 s). It
# passes in about 170 s alone at load 10: most of it set-up (45 s), the rollout
# reaching its step (30 s) and the outage with the restart (60 s).
@pytest.mark.timeout(600)
def test_the_driver_holds_through_an_api_server_outage_and_records_it(
    kube_cluster: KubeCluster, kube_namespace: str, short_tmp: Path
) -> None:
    plane = FakeDataPlane(kube_cluster, kube_namespace, SERVICE, rate_rps=200)
    driver = None
    following = None
    try:
        # Given a rollout of v2 at its only step, driven by the driver in the cluster
        text = manifest_text(
            kube_namespace,
            plane.prometheus_url,
            steps="[{weight: 50}]",
            min_duration="15s",
            max_duration="120s",
            extra=QUICK_POLICY,
        )
        a, b, platform = prepare(kube_cluster, kube_namespace, short_tmp, text)
        read = _reader(kube_cluster, kube_namespace, a.root)
        platform.cli("deploy")
        driver = start_driver(pod_machine(short_tmp / "pod", platform))
        wait_for("the driver's Lease", lambda: f"/{driver.pid}/" in lease_holder(
            kube_cluster, kube_namespace), driver=driver)  # fmt: skip
        following = a.popen("rollout", "v2")
        wait_for("step 1 at 50%", lambda: read.weights().get(CANARY) == 50, driver=driver)

        # When the API server is stopped for 30 s mid-step
        with api_server_stopped(kube_cluster):
            time.sleep(30)
            # Then the driver does not exit (it holds, backing off)
            assert driver.process.poll() is None, driver.output()

        # and once it is back, the rollout carries on and is promoted; A's follower,
        # which waited through the outage too, ends with exit 0
        try:
            out, err = following.communicate(timeout=240)
        except subprocess.TimeoutExpired:
            # fail on the test's own clock, with what the driver said (a clean-clone run
            # once waited here until the suite's timeout cut it, with no log to read)
            pytest.fail(f"the follower waits 240 s after the outage:\n{driver.output()[-6000:]}")
        assert following.returncode == 0, err + driver.output()[-3000:]
        assert "promoted" in out
        assert read.image("stable") == "registry.example/demo:v2"
        assert read.weights() == {STABLE: 100}

        # and the trail in the cluster holds the outage, its start and end, as any
        # operator reads it
        records = json.loads(b.cli("audit", "export", "--format", "json").stdout)
        outages = [r for r in records if r.get("kind") == "driver" and r.get("event") == "outage"]
        assert outages, records[-5:]
        assert outages[0]["ended_at"] - outages[0]["started_at"] >= 25
        print(f"outage recorded: {outages[0]['duration_s']:.1f}s")
        assert driver.process.poll() is None, driver.output()
    finally:
        reap(following)
        if driver is not None:
            driver.stop()
        plane.close()


def test_the_driver_image_runs_the_printed_deployment_against_the_api_server(
    kube_cluster: KubeCluster, kube_namespace: str, short_tmp: Path
) -> None:
    # Given the driver's image, and the pod `kube install --print` describes: its
    # container's command, environment and files (the project ConfigMap's items, the
    # ServiceAccount's token and CA where a pod has them), run by Docker on this host
    client_ = engine()
    image = build_driver_image(["test-image"], progress=lambda line: None)[0]
    text = manifest_text(kube_namespace, f"http://127.0.0.1:{free_port()}", max_duration="120s")
    a, b, platform = prepare(kube_cluster, kube_namespace, short_tmp, text)
    read = _reader(kube_cluster, kube_namespace, a.root)
    platform.cli("deploy")
    admin = a.env() | {"KUBECONFIG": str(kube_cluster.admin_kubeconfig)}
    printed = subprocess.run(
        a.argv("kube", "install", "--print", "--image", image),
        capture_output=True,
        text=True,
        env=admin,
        check=True,
    ).stdout
    documents = {d["kind"]: d for d in yaml.safe_load_all(printed) if d}
    pod = documents["Deployment"]["spec"]["template"]["spec"]
    container = pod["containers"][0]
    files = short_tmp / "pod-files"
    for item in next(v for v in pod["volumes"] if "configMap" in v)["configMap"]["items"]:
        target = files / "project" / item["path"]
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(documents["ConfigMap"]["data"][item["key"]])
    # the API server's Service is not reachable from a host process: its address here
    in_cluster = yaml.safe_load((files / "project" / "kubeconfig").read_text())
    in_cluster["clusters"][0]["cluster"]["server"] = kube_cluster.server
    (files / "project" / "kubeconfig").write_text(yaml.safe_dump(in_cluster))
    secrets_dir = files / "serviceaccount"
    secrets_dir.mkdir()
    token = yaml.safe_load(platform.kubeconfig.read_text())["users"][0]["user"]["token"]
    (secrets_dir / "token").write_text(token)
    (secrets_dir / "ca.crt").write_bytes((kube_cluster.workdir / "pki" / "ca.crt").read_bytes())
    for path in [short_tmp, files, *files.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)  # the container's uid reads them
    scratch = files / "tmp"  # the pod's emptyDir at /tmp, kept to read a crash's log
    scratch.mkdir()
    scratch.chmod(0o1777)

    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    running = client_.containers.run(
        image,
        container["command"],
        detach=True,
        network_mode="host",
        read_only=True,
        user=f"{pod['securityContext']['runAsUser']}",
        environment={e["name"]: e["value"] for e in container["env"]},
        volumes={
            str(files / "project"): {"bind": mounts["project"], "mode": "ro"},
            str(secrets_dir): {"bind": TOKEN_DIR, "mode": "ro"},
            str(scratch): {"bind": mounts["tmp"], "mode": "rw"},
        },
        tmpfs={mounts["work"]: "mode=1777"},
    )
    try:
        wait_for(
            "the driver in the container to hold the Lease",
            lambda: "boot=" in lease_holder(kube_cluster, kube_namespace),
            timeout=90,
        )

        # When A starts a rollout and B aborts it, then the container's driver did both
        a.cli("rollout", "v2", "--detach")
        wait_for("step 1 at 10%", lambda: read.weights().get(CANARY) == 10)
        aborted = b.cli("abort")
        assert "aborted by" in aborted.stdout, aborted.stdout
        assert read.weights().get(CANARY, 0) == 0
        status = json.loads(b.cli("status", "--json", "--window", "0").stdout)
        assert status["driver"]["holder"] == lease_holder(kube_cluster, kube_namespace)
    finally:
        running.stop(timeout=30)  # SIGTERM: it finishes its look and records its exit
        logs = running.logs().decode(errors="replace")
        exit_code = running.wait(timeout=30)["StatusCode"]
        running.remove()
        crashes = "".join(path.read_text() for path in scratch.glob("swiftdeploy-crash-*"))
        assert not crashes, crashes  # the driver's traceback, before any other failure
    assert exit_code == 0, logs
    assert "driver: holding the Lease" in logs


# A driver that lost its Lease exits within a renewal period (the renewer finds it
# lost), plus a margin for a busy machine: the exit's own work, a look under way.
LOST_BOUND_S = LEASE_S / 3 + 5.0


def test_a_driver_whose_lease_is_deleted_exits_within_a_renewal_period_and_writes_nothing(
    kube_cluster: KubeCluster, kube_namespace: str, short_tmp: Path
) -> None:
    # Given a rollout holding at its first step, driven by its driver in the cluster, and
    # another service's driver idle between rollouts in another namespace
    idle_namespace = f"{kube_namespace}-idle"
    kube_cluster.create_namespace(idle_namespace)
    drivers = {}
    try:
        dead = f"http://127.0.0.1:{free_port()}"  # no Prometheus answers: every look holds
        text = manifest_text(kube_namespace, dead, max_duration="120s")
        a, _, platform = prepare(kube_cluster, kube_namespace, short_tmp / "busy", text)
        read = _reader(kube_cluster, kube_namespace, a.root)
        platform.cli("deploy")
        _, _, idle = prepare(
            kube_cluster,
            idle_namespace,
            short_tmp / "idle",
            manifest_text(idle_namespace, dead, max_duration="120s"),
        )
        for namespace, machine in ((kube_namespace, platform), (idle_namespace, idle)):
            driver = drivers[namespace] = start_driver(pod_machine(machine.root / "pod", machine))
            wait_for(
                "the driver's Lease",
                lambda pid=driver.pid, ns=namespace: f"/{pid}/" in lease_holder(kube_cluster, ns),
                driver=driver,
            )
        a.cli("rollout", "v2", "--detach")
        busy = drivers[kube_namespace]
        wait_for("step 1 at 10%", lambda: read.weights().get(CANARY) == 10, driver=busy)
        core = client.CoreV1Api(kube_cluster.api)

        def looked() -> bool:
            state = core.read_namespaced_config_map(f"{SERVICE}-swiftdeploy-state", kube_namespace)
            return json.loads(state.data["state.json"]).get("last_look") is not None

        wait_for("a look at step 1", looked, driver=busy)

        # When an admin deletes both Leases
        coordination = client.CoordinationV1Api(kube_cluster.api)
        deleted_at, deleted_rv = {}, {}
        for namespace in drivers:
            before = coordination.list_namespaced_lease(namespace).metadata.resource_version
            coordination.delete_namespaced_lease(f"{SERVICE}-swiftdeploy", namespace)
            deleted_at[namespace] = time.monotonic()
            deleted_rv[namespace] = deletion_version(coordination, namespace, before)

        # Then each driver exits 1 within the bound, saying it lost the Lease
        took = {}
        while len(took) < len(drivers):
            for namespace, driver in drivers.items():
                if namespace not in took and driver.process.poll() is not None:
                    took[namespace] = time.monotonic() - deleted_at[namespace]
            waited = time.monotonic() - max(deleted_at.values())
            assert waited < 60, {n: d.output()[-2000:] for n, d in drivers.items()}
            time.sleep(0.05)
        for namespace, driver in drivers.items():
            assert driver.process.returncode == 1, driver.output()[-3000:]
            assert "lost the Lease" in driver.output(), driver.output()[-3000:]
            assert took[namespace] < LOST_BOUND_S, (took, driver.output()[-3000:])

            # and wrote nothing after the deletion: no ConfigMap (state, trail, driver's
            # heartbeat, requests) has a later resourceVersion, but for at most one write
            # already sent when the Lease went; nor is the Lease created again
            later = [
                (item.metadata.name, int(item.metadata.resource_version))
                for item in core.list_namespaced_config_map(namespace).items
                if int(item.metadata.resource_version) > deleted_rv[namespace]
            ]
            assert len(later) <= 1, (later, deleted_rv[namespace])
            print(f"{namespace}: written after the deletion: {later}")
            assert not coordination.list_namespaced_lease(namespace).items
        assert read.weights().get(CANARY) == 10  # the canary is left as it was
        busy_s, idle_s = took[kube_namespace], took[idle_namespace]
        print(f"lost Lease to exit: busy {busy_s:.2f}s, idle {idle_s:.2f}s")
    finally:
        for driver in drivers.values():
            driver.stop()
        kube_cluster.delete_namespace(idle_namespace)


def deletion_version(coordination: client.CoordinationV1Api, namespace: str, since: str) -> int:
    """The resourceVersion of the Lease's deletion (its watch event says it): any object
    written after the deletion has a greater one."""
    events = watch.Watch().stream(
        coordination.list_namespaced_lease, namespace, resource_version=since, timeout_seconds=30
    )
    for event in events:
        if event["type"] == "DELETED":
            return int(event["object"].metadata.resource_version)
    raise AssertionError(f"no deletion of the Lease in {namespace} seen")
