"""The kubernetes runtime end to end: the real CLI against a real control plane (kwok
nodes), as a user holding only the Roles `swiftdeploy kube rbac` prints, so every
test also proves those Roles are enough. Rollouts are run by the driver in the cluster
(a host process with its ServiceAccount's token, as in its pod); the CLI starts,
steers and follows them. Weights are read back from the API server."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

import pytest
from bench.support.cluster_driver import project_driver
from bench.support.kube import KubeCluster
from bench.support.kubeproject import QUICK_POLICY, SERVICE, USER, KubeProject, new_project
from bench.support.project import SWIFTDEPLOY
from kubernetes import client

from swiftdeploy.ports import free_port
from tests.support.kube import FakeDataPlane

STABLE, CANARY = f"{SERVICE}-stable", f"{SERVICE}-canary"
FORCE = ("--force", "--reason", "no metrics in this test: the lifecycle is under test")


@pytest.fixture
def dead_prometheus() -> str:
    """A Prometheus URL nothing answers: every look is a provider error, which holds."""
    return f"http://127.0.0.1:{free_port()}"


@pytest.fixture
def project(
    kube_cluster: KubeCluster, kube_namespace: str, short_tmp: Path, dead_prometheus: str
) -> KubeProject:
    return new_project(kube_cluster, kube_namespace, short_tmp / "a", dead_prometheus)


def test_deploy_canary_rollback_then_promote_moves_the_http_route(project: KubeProject) -> None:
    # Given v1 deployed as stable
    deployed = project.cli("deploy").stdout
    assert f"routed by HTTPRoute {project.namespace}/{SERVICE}" in deployed
    assert project.image("stable") == "registry.example/demo:v1"
    assert project.deployment("stable").status.ready_replicas == 2  # type: ignore[union-attr]
    assert project.weights() == {STABLE: 100}
    assert project.header_rules() == {"never": STABLE}

    # When a canary of v2 starts by hand
    project.cli("canary", "v2")

    # Then the HTTPRoute on the API server sends it the first step's weight, and the
    # canary header pins requests to either track
    assert project.weights() == {STABLE: 90, CANARY: 10}
    assert project.header_rules() == {"always": CANARY, "never": STABLE}
    assert project.image("canary") == "registry.example/demo:v2"

    # When the weight moves up by hand (forced: no metrics here), then the route follows
    project.cli("weight", "50", *FORCE)
    assert project.weights() == {STABLE: 50, CANARY: 50}

    # When it is rolled back: the route goes to 100/0 and the canary's Deployment goes
    project.cli("rollback")
    assert project.weights() == {STABLE: 100}
    project.wait_for("the canary Deployment to go", lambda: project.deployment("canary") is None)

    # When v3 is promoted through every step
    project.cli("canary", "v3")
    project.cli("promote", "--all", *FORCE)

    # Then the stable Deployment runs v3, all traffic goes to it, and no canary is left
    assert project.image("stable") == "registry.example/demo:v3"
    assert project.weights() == {STABLE: 100}
    assert project.deployment("canary") is None
    status = json.loads(project.cli("status", "--json", "--window", "0").stdout)
    assert status["stable_version"] == "v3"
    assert {(r["track"], r["version"]) for r in status["replicas"]} == {("stable", "v3")}

    # When it is torn down, then nothing labelled for the service is left
    project.cli("teardown")
    assert project.route() is None
    assert project.deployment("stable") is None


@contextmanager
def quota_full(cluster: KubeCluster, namespace: str) -> Iterator[None]:
    """No room for another pod in the namespace: the canary's pod is never created."""
    client.CoreV1Api(cluster.api).create_namespaced_resource_quota(
        namespace, {"metadata": {"name": "full"}, "spec": {"hard": {"pods": "2"}}}
    )
    yield


@pytest.mark.parametrize(
    ("blocked", "reason"),
    [
        (quota_full, "exceeded quota"),
        (lambda cluster, namespace: cluster.unschedulable(), "Unschedulable"),
    ],
    ids=["no-pod-created", "pod-never-scheduled"],
)
def test_a_canary_whose_pods_never_start_is_rolled_back_with_the_reason(
    kube_cluster: KubeCluster,
    kube_namespace: str,
    short_tmp: Path,
    dead_prometheus: str,
    blocked: Callable[[KubeCluster, str], AbstractContextManager[None]],
    reason: str,
) -> None:
    # Given v1 deployed
    project = new_project(
        kube_cluster, kube_namespace, short_tmp / "a", dead_prometheus, start_timeout="4s"
    )
    project.cli("deploy")

    # When v2 is rolled out (by the driver in the cluster) where its pod cannot start
    driver = project_driver(kube_cluster, kube_namespace, project.manifest, short_tmp / "pod")
    try:
        with blocked(kube_cluster, kube_namespace):
            done = project.cli("rollout", "v2", check=False)
    finally:
        driver.stop()

    # Then it is rolled back (exit 3) saying why its pods never became ready
    assert done.returncode == 3, done.stderr
    assert "the canary did not become ready" in done.stderr
    assert reason in done.stderr
    assert project.weights() == {STABLE: 100}
    assert project.deployment("canary") is None


def test_the_lease_refuses_a_second_cli_and_a_killed_driver_is_resumed_by_the_next(
    kube_cluster: KubeCluster, kube_namespace: str, short_tmp: Path
) -> None:
    # Given v1 deployed, its pods' series in a real Prometheus, and a rollout of v2
    # run by the driver in the cluster (one step, which lasts at least min_duration)
    plane = FakeDataPlane(kube_cluster, kube_namespace, SERVICE, rate_rps=200)
    drivers = []
    try:
        project = new_project(
            kube_cluster,
            kube_namespace,
            short_tmp / "a",
            plane.prometheus_url,
            min_duration="12s",
            max_duration="60s",
            steps="[{weight: 50}]",
            extra=QUICK_POLICY,
        )
        project.cli("deploy")
        first = project_driver(kube_cluster, kube_namespace, project.manifest, short_tmp / "p1")
        drivers.append(first)
        following = project.popen("rollout", "v2")
        project.wait_for("step 1", lambda: project.weights().get(CANARY) == 50, timeout=60)
        elsewhere = project.second_machine(short_tmp / "b")

        # When a second operator, with none of this directory's state, acts by hand
        refused = project.cli("canary", "v3", cwd=elsewhere, check=False)

        # Then the driver's Lease refuses it in one line, naming who drives the service
        assert refused.returncode == 1, refused.stderr
        assert "is being driven by" in refused.stderr
        assert f"/{first.pid}/" in refused.stderr
        assert len(refused.stderr.strip().splitlines()) == 1

        # When the driver is killed mid-rollout and another pod of it starts
        first.kill()
        second = project_driver(kube_cluster, kube_namespace, project.manifest, short_tmp / "p2")
        drivers.append(second)

        # Then it carries the rollout on at once (the Lease's holder is gone) from the
        # state in the cluster, and the analysis on Prometheus's answers promotes it; the
        # first operator's follower ends with the outcome
        out, err = following.communicate(timeout=120)
        assert following.returncode == 0, err
        assert "promoted: v2 is stable" in out
        assert project.image("stable") == "registry.example/demo:v2"
        assert project.weights() == {STABLE: 100}
        project.wait_for("the canary to go", lambda: project.deployment("canary") is None)
    finally:
        for driver in drivers:
            driver.stop()
        plane.close()


def test_abort_stops_a_running_rollout_and_rolls_it_back(
    kube_cluster: KubeCluster, kube_namespace: str, short_tmp: Path, dead_prometheus: str
) -> None:
    # Given a rollout of v2 running at its first step (holding for want of metrics)
    project = new_project(
        kube_cluster, kube_namespace, short_tmp / "a", dead_prometheus, max_duration="60s"
    )
    project.cli("deploy")
    driver = project_driver(kube_cluster, kube_namespace, project.manifest, short_tmp / "pod")
    try:
        running = project.popen("rollout", "v2")
        project.wait_for("step 1", lambda: project.weights().get(CANARY) == 10, timeout=60)

        # When it is aborted
        done = project.cli("abort")
        _, followed = running.communicate(timeout=60)
    finally:
        driver.stop()

    # Then the driver stopped the rollout as the person's request, the follower ended
    # with the rollback (exit 3), and the canary was rolled back
    assert "aborted by" in done.stdout, done.stdout + done.stderr
    assert running.returncode == 3, followed
    assert project.weights() == {STABLE: 100}
    project.wait_for("the canary Deployment to go", lambda: project.deployment("canary") is None)


def test_validate_dry_runs_every_object_on_the_server(project: KubeProject) -> None:
    # Given a valid manifest, validate names every object it dry-ran
    checks = project.cli("validate").stdout
    for kind, name in [("Deployment", STABLE), ("Service", CANARY), ("HTTPRoute", SERVICE)]:
        assert f"server-side dry run: {kind} {project.namespace}/{name}" in checks
    assert project.deployment("stable") is None  # a dry run creates nothing

    # When the version makes a label the API server refuses (it must end alphanumeric)
    project.manifest.write_text(project.manifest.read_text().replace("version: v1", "version: v1-"))
    done = project.cli("validate", check=False)

    # Then validate fails with one line naming the object and the server's message
    assert done.returncode == 2, done.stderr
    line = done.stderr.strip()
    assert len(line.splitlines()) == 1
    assert f"Deployment {project.namespace}/{STABLE} fails the server-side dry run" in line
    assert "v1-" in line


def test_the_kubeconfig_context_and_missing_rights_are_one_line_each(
    project: KubeProject, kube_cluster: KubeCluster, kube_namespace: str
) -> None:
    # Given a manifest naming a context the kubeconfig does not have
    text = project.manifest.read_text()
    project.manifest.write_text(
        text.replace(
            f"namespace: {kube_namespace}", f"namespace: {kube_namespace}\n  context: nope"
        )
    )
    # Then validate says so in one line (exit 2)
    done = project.cli("validate", check=False)
    assert done.returncode == 2, done.stderr
    assert "context 'nope'" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    # and --kube-context overrides it with the kubeconfig's real one
    done = subprocess.run(
        [
            SWIFTDEPLOY,
            "--kube-context",
            f"{USER}@swiftdeploy-test",
            "validate",
            "-f",
            str(project.manifest),
        ],
        capture_output=True,
        text=True,
        env=project.env(),
        check=False,
    )
    assert done.returncode == 0, done.stderr

    # Given a user the Role is not bound to
    stranger = kube_cluster.user_kubeconfig("stranger", kube_namespace)
    project.manifest.write_text(text)
    done = subprocess.run(
        [SWIFTDEPLOY, "deploy", "-f", str(project.manifest)],
        capture_output=True,
        text=True,
        env={**project.env(), "KUBECONFIG": str(stranger)},
        check=False,
    )
    # Then the API server's refusal is one line pointing at the Role, and nothing runs
    assert done.returncode == 1, done.stderr
    assert "forbidden" in done.stderr
    assert "swiftdeploy kube rbac" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    assert project.deployment("stable") is None


def test_doctor_reports_the_cluster_version_and_the_gateway_api(project: KubeProject) -> None:
    done = project.cli("doctor", "--json", check=False)
    assert "kubernetes API server" in done.stdout
    assert "v1.37" in done.stdout
    assert "HTTPRoute (gateway.networking.k8s.io/v1) is served" in done.stdout


def test_a_failing_canary_is_rolled_back_on_prometheus_evidence(
    kube_cluster: KubeCluster, kube_namespace: str, short_tmp: Path
) -> None:
    # Given v1 deployed, with its pods' series in a real Prometheus and traffic split by
    # the HTTPRoute
    plane = FakeDataPlane(kube_cluster, kube_namespace, SERVICE, rate_rps=40)
    driver = None
    try:
        project = new_project(
            kube_cluster, kube_namespace, short_tmp / "a", plane.prometheus_url, max_duration="60s"
        )
        project.cli("deploy")

        # When v2 is rolled out (by the driver in the cluster) and its pods fail every
        # request
        driver = project_driver(kube_cluster, kube_namespace, project.manifest, short_tmp / "pod")
        running = project.popen("rollout", "v2")
        project.wait_for(
            "the canary's pods",
            lambda: "canary" in plane.pods() and plane.pods()["canary"].healthy,
            timeout=60,
        )
        plane.chaos("canary", error_rate=1.0)
        _, stderr = running.communicate(timeout=90)

        # Then the analysis, on PromQL answers, rolls it back (exit 3) and the route
        # gives the canary nothing
        assert running.returncode == 3, stderr
        assert "rolled back" in stderr
        assert project.weights() == {STABLE: 100}
        assert plane.counts()["canary"].failed > 0
    finally:
        if driver is not None:
            driver.stop()
        plane.close()
