"""A SwiftDeploy project on the test cluster, driven by the real CLI as a user bound to
the Role `swiftdeploy kube rbac` prints (never as an admin), and read back through
the admin's API client."""

from __future__ import annotations

import os
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from bench.support.host import generous_host_gate
from bench.support.kube import KubeCluster
from bench.support.project import SWIFTDEPLOY, run_cli
from kubernetes import client
from kubernetes.client.rest import ApiException

SERVICE = "demo"
STABLE_NAME, CANARY_NAME = f"{SERVICE}-stable", f"{SERVICE}-canary"
USER = "deployer"
# What to catch kept coarse, so a healthy canary passes in seconds of test traffic.
QUICK_POLICY = """\
policy:
  alpha: 0.05
  beta: 0.3
  detect:
    errors: +20%
    latency: +5s
"""

MANIFEST = """\
apiVersion: swiftdeploy/v1
runtime: kubernetes
service:
  name: {service}
  image: registry.example/demo:{{version}}
  port: 8080
  version: v1
  replicas: 2
  start_timeout: {start_timeout}
kubernetes:
  namespace: {namespace}
traffic:
  drain: 0s
strategy:
  canary:
    replicas: 1
    steps: {steps}
    analysis:
      interval: 1s
      min_duration: {min_duration}
      max_duration: {max_duration}
      warmup: off  # these tests are about Kubernetes, in steps of a few seconds
metrics:
  provider: prometheus
  window: 10s
  prometheus:
    url: {prometheus}
"""


@dataclass
class KubeProject:
    root: Path
    namespace: str
    kubeconfig: Path
    cluster: KubeCluster

    @property
    def manifest(self) -> Path:
        return self.root / "swiftdeploy.yaml"

    def env(self) -> dict[str, str]:
        return {**os.environ, "KUBECONFIG": str(self.kubeconfig)}

    def cli(
        self, *args: str, check: bool = True, timeout: float = 90, cwd: Path | None = None
    ) -> subprocess.CompletedProcess[str]:
        manifest = (cwd or self.root) / "swiftdeploy.yaml"
        return run_cli(manifest, args, check=check, timeout=timeout, env=self.env())

    def popen(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [SWIFTDEPLOY, *args, "-f", str(self.manifest)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=self.root,
            env=self.env(),
        )

    def second_machine(self, root: Path) -> Path:
        """Another operator's checkout: the same manifest and policies, none of this
        directory's local state (no lock, no state file)."""
        subprocess.run([SWIFTDEPLOY, "init", str(root)], check=True, capture_output=True)
        (root / "swiftdeploy.yaml").write_text(self.manifest.read_text())
        return root

    # --- what the API server says (as admin) -------------------------------------------

    def route(self) -> dict[str, Any] | None:
        try:
            found: dict[str, Any] = client.CustomObjectsApi(
                self.cluster.api
            ).get_namespaced_custom_object(
                "gateway.networking.k8s.io", "v1", self.namespace, "httproutes", SERVICE
            )
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        return found

    def weights(self) -> dict[str, int]:
        """The weighted rule's backends (the rule matching no header), by Service name."""
        route = self.route()
        assert route is not None, "no HTTPRoute"
        split = [
            rule
            for rule in route["spec"]["rules"]
            if not any(match.get("headers") for match in rule.get("matches") or [])
        ]
        assert len(split) == 1, route["spec"]["rules"]
        return {ref["name"]: ref.get("weight", 1) for ref in split[0]["backendRefs"]}

    def header_rules(self) -> dict[str, str]:
        """X-Canary value -> the Service it routes to."""
        route = self.route()
        assert route is not None
        out = {}
        for rule in route["spec"]["rules"]:
            for match in rule.get("matches") or []:
                for header in match.get("headers", []):
                    out[header["value"]] = rule["backendRefs"][0]["name"]
        return out

    def deployment(self, track: str) -> client.V1Deployment | None:
        try:
            return client.AppsV1Api(self.cluster.api).read_namespaced_deployment(
                f"{SERVICE}-{track}", self.namespace
            )
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def image(self, track: str) -> str | None:
        found = self.deployment(track)
        return None if found is None else found.spec.template.spec.containers[0].image

    def wait_for(self, what: str, check: Any, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while not check():
            assert time.monotonic() < deadline, f"timed out waiting for {what}"
            time.sleep(0.1)


def apply_rbac(cluster: KubeCluster, namespace: str, printed: str) -> None:
    """Creates what `swiftdeploy kube rbac` printed, as an admin would apply it."""
    rbac = client.RbacAuthorizationV1Api(cluster.api)
    for document in yaml.safe_load_all(printed):
        if document["kind"] == "Role":
            rbac.create_namespaced_role(namespace, document)
        elif document["kind"] == "RoleBinding":
            rbac.create_namespaced_role_binding(namespace, document)
        else:
            client.CoreV1Api(cluster.api).create_namespaced_service_account(namespace, document)


def bind_role(cluster: KubeCluster, project: KubeProject) -> None:
    """The Roles and RoleBindings exactly as `swiftdeploy kube rbac` prints them, both
    bound to the CLI's user: the CLI still drives rollouts itself (the driver's Role)
    besides reading them (the operators')."""
    done = subprocess.run(
        [
            SWIFTDEPLOY, "kube", "rbac", "-f", str(project.manifest),
            "--subject", f"User/{USER}", "--driver-subject", f"User/{USER}",
        ],
        capture_output=True,
        text=True,
        check=True,
    )  # fmt: skip
    apply_rbac(cluster, project.namespace, done.stdout)


def manifest_text(
    namespace: str,
    prometheus: str,
    *,
    steps: str = "[{weight: 10}, {weight: 50}]",
    min_duration: str = "1s",
    max_duration: str = "60s",
    start_timeout: str = "30s",
    extra: str = "",
) -> str:
    return (
        MANIFEST.format(
            service=SERVICE,
            namespace=namespace,
            prometheus=prometheus,
            start_timeout=start_timeout,
            min_duration=min_duration,
            max_duration=max_duration,
            steps=steps,
        )
        + extra
    )


def new_project(
    cluster: KubeCluster,
    namespace: str,
    root: Path,
    prometheus: str,
    *,
    start_timeout: str = "30s",
    min_duration: str = "1s",
    max_duration: str = "4s",
    extra: str = "",
    steps: str = "[{weight: 10}, {weight: 50}]",
) -> KubeProject:
    subprocess.run([SWIFTDEPLOY, "init", str(root)], check=True, capture_output=True)
    project = KubeProject(root, namespace, cluster.user_kubeconfig(USER, namespace), cluster)
    project.manifest.write_text(
        manifest_text(
            namespace,
            prometheus,
            steps=steps,
            min_duration=min_duration,
            max_duration=max_duration,
            start_timeout=start_timeout,
            extra=extra,
        )
    )
    generous_host_gate(project.manifest)  # a busy machine must not refuse the deploy
    bind_role(cluster, project)
    return project
