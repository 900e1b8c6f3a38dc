"""The driver in the cluster, on the test control plane: the service's Roles as
`swiftdeploy kube rbac` prints them, the driver as a host process whose kubeconfig
carries its ServiceAccount's token (what it sees inside its pod), and operators'
machines, each with its own checkout, HOME and kubeconfig (the user `deployer`, bound
only to the operators' Role)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from bench.support.host import generous_host_gate
from bench.support.kube import KubeCluster
from bench.support.kubeproject import SERVICE, USER, apply_rbac
from bench.support.project import SWIFTDEPLOY, run_cli
from kubernetes import client
from kubernetes.client.rest import ApiException

DRIVER_ACCOUNT = f"{SERVICE}-swiftdeploy-driver"
RBAC_GROUP = "rbac.authorization.k8s.io"


@dataclass
class Machine:
    """A checkout of the project with its own HOME, as one person (or pod) has it."""

    root: Path
    kubeconfig: Path
    home: Path = field(init=False)

    def __post_init__(self) -> None:
        self.home = self.root / "home"
        self.home.mkdir(parents=True, exist_ok=True)

    @property
    def manifest(self) -> Path:
        return self.root / "swiftdeploy.yaml"

    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "KUBECONFIG": str(self.kubeconfig),
            "HOME": str(self.home),
            "XDG_CONFIG_HOME": str(self.home / ".config"),
        }

    def argv(self, *args: str) -> list[str]:
        return [SWIFTDEPLOY, *args, "-f", str(self.manifest)]

    def cli(
        self, *args: str, check: bool = True, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        return run_cli(self.manifest, args, check=check, timeout=timeout, env=self.env())

    def popen(self, *args: str, log: Path | None = None) -> subprocess.Popen[str]:
        """Output to pipes, or (`log`) both streams to that file."""
        if log is None:
            return subprocess.Popen(
                self.argv(*args),
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                cwd=self.root,
                env=self.env(),
            )
        with log.open("a") as out:
            return subprocess.Popen(
                self.argv(*args),
                stdout=out,
                stderr=subprocess.STDOUT,
                text=True,
                cwd=self.root,
                env=self.env(),
            )


def checkout(root: Path, manifest_text: str, kubeconfig: Path) -> Machine:
    """`swiftdeploy init` (the policies), then the service's manifest."""
    subprocess.run([SWIFTDEPLOY, "init", str(root)], check=True, capture_output=True)
    machine = Machine(root, kubeconfig)
    machine.manifest.write_text(manifest_text)
    return machine


def operators_rbac(cluster: KubeCluster, machine: Machine, namespace: str) -> None:
    """Everything `swiftdeploy kube rbac --subject User/deployer` prints, applied as
    the cluster's admin: the driver's ServiceAccount, Role and RoleBinding, and the
    operators' Role bound to `deployer`."""
    done = subprocess.run(
        [SWIFTDEPLOY, "kube", "rbac", "-f", str(machine.manifest), "--subject", f"User/{USER}"],
        capture_output=True,
        text=True,
        check=True,
    )
    apply_rbac(cluster, namespace, done.stdout)


def bind_driver_account(cluster: KubeCluster, namespace: str) -> None:
    """The driver's Role bound to its ServiceAccount too, where the tests bound it to
    the CLI's user (kubeproject.bind_role)."""
    body = {
        "metadata": {"name": f"{DRIVER_ACCOUNT}-pod", "namespace": namespace},
        "roleRef": {"apiGroup": RBAC_GROUP, "kind": "Role", "name": DRIVER_ACCOUNT},
        "subjects": [{"kind": "ServiceAccount", "name": DRIVER_ACCOUNT, "namespace": namespace}],
    }
    with contextlib.suppress(ApiException):  # bound already
        client.RbacAuthorizationV1Api(cluster.api).create_namespaced_role_binding(namespace, body)


def create_secret(cluster: KubeCluster, namespace: str, name: str, data: dict[str, str]) -> None:
    """A Secret as a namespace's admin creates it (`kubectl create secret generic`)."""
    body = {"metadata": {"name": name, "namespace": namespace}, "stringData": data}
    client.CoreV1Api(cluster.api).create_namespaced_secret(namespace, body)


def driver_kubeconfig(cluster: KubeCluster, namespace: str, path: Path) -> Path:
    """A kubeconfig with a token of the driver's ServiceAccount (TokenRequest)."""
    token = (
        client.CoreV1Api(cluster.api)
        .create_namespaced_service_account_token(
            DRIVER_ACCOUNT, namespace, {"spec": {"expirationSeconds": 7200}}
        )
        .status.token
    )
    ca = cluster.workdir / "pki" / "ca.crt"
    document = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "test",
                "cluster": {"server": cluster.server, "certificate-authority": str(ca)},
            }
        ],
        "users": [{"name": "driver", "user": {"token": token}}],
        "contexts": [
            {
                "name": "driver",
                "context": {"cluster": "test", "user": "driver", "namespace": namespace},
            }
        ],
        "current-context": "driver",
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(document))
    path.chmod(0o600)
    return path


@dataclass
class Driver:
    """`swiftdeploy drive --controller` as a host process: one pod of the driver."""

    machine: Machine
    process: subprocess.Popen[str]
    log: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def kill(self) -> None:
        """kill -9, as a node that dies takes its pod."""
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


def reap(process: subprocess.Popen[str] | None) -> None:
    """A CLI a failed test left running: killed and its pipes closed, so they are not
    found unclosed during a later test (pytest fails that one for it)."""
    if process is None:
        return
    if process.poll() is None:
        process.kill()
    streams = [stream for stream in (process.stdout, process.stderr) if stream is not None]
    if any(not stream.closed for stream in streams):
        process.communicate(timeout=30)


def start_driver(machine: Machine) -> Driver:
    log = machine.root / "driver.log"
    return Driver(machine, machine.popen("drive", "--controller", log=log), log)


def lease_holder(cluster: KubeCluster, namespace: str) -> str:
    try:
        lease = client.CoordinationV1Api(cluster.api).read_namespaced_lease(
            f"{SERVICE}-swiftdeploy", namespace
        )
    except ApiException as exc:
        if exc.status == 404:
            return ""
        raise
    return str(lease.spec.holder_identity or "")


def wait_for(
    what: str,
    check: Any,
    timeout: float = 60,
    driver: Driver | None = None,
    log: Path | None = None,
) -> None:
    """Until `check()`; fails when `driver` exits meanwhile, or on timeout with the end
    of the driver's log (or of `log`)."""
    deadline = time.monotonic() + timeout
    log = driver.log if driver is not None else log
    while not check():
        if driver is not None and driver.process.poll() is not None:
            raise AssertionError(
                f"the driver exited {driver.process.returncode}:\n{driver.output()}"
            )
        tail = log.read_text(errors="replace")[-3000:] if log is not None and log.exists() else ""
        assert time.monotonic() < deadline, f"timed out waiting for {what}; log:\n{tail}"
        time.sleep(0.1)


def prepare(
    cluster: KubeCluster, namespace: str, root: Path, text: str
) -> tuple[Machine, Machine, Machine]:
    """The service's Roles applied; machine A and machine B (operators, as `deployer`)
    and the platform's machine P (the driver's identity) that deploys v1 first."""
    operator = cluster.user_kubeconfig(USER, namespace)
    a = checkout(root / "a", text, operator)
    b = checkout(root / "b", text, operator)
    operators_rbac(cluster, a, namespace)
    platform = checkout(root / "p", text, driver_kubeconfig(cluster, namespace, root / "p.kube"))
    for machine in (a, b, platform):
        generous_host_gate(machine.manifest)  # a busy machine must not refuse the deploy
    return a, b, platform


def pod_machine(root: Path, platform: Machine) -> Machine:
    """A new pod of the driver: a fresh checkout with the driver's kubeconfig."""
    return checkout(root, platform.manifest.read_text(), platform.kubeconfig)


def project_driver(cluster: KubeCluster, namespace: str, manifest: Path, root: Path) -> Driver:
    """The driver of a kubeproject's service, as its pod runs it (its ServiceAccount's
    token, a checkout of its own), holding the service's Lease."""
    bind_driver_account(cluster, namespace)
    kubeconfig = driver_kubeconfig(cluster, namespace, root / "driver.kube")
    driver = start_driver(checkout(root / "driver", manifest.read_text(), kubeconfig))
    wait_for(
        "the driver's Lease",
        lambda: f"/{driver.pid}/" in lease_holder(cluster, namespace),
        driver=driver,
    )
    return driver
