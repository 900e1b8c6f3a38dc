"""A real Kubernetes control plane for the kubernetes tests (started per test session)
and the benchmarks.

etcd, kube-apiserver, kube-controller-manager, kube-scheduler and kwok (fake nodes: pods
become Running without containers) run as local processes on loopback ports picked
free, with certificates made here: a CA, a serving certificate for 127.0.0.1, and a
client certificate per identity. The Gateway API CRDs are installed, with a Gateway for
HTTPRoutes to attach to. `make setup` builds the binaries (scripts/install-kube.sh).

No container runs behind a kwok pod: the tests' FakeDataPlane (tests/support/kube.py)
stands in for the pods.
"""

from __future__ import annotations

import base64
import contextlib
import datetime
import ipaddress
import os
import re
import signal
import ssl
import subprocess
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import httpx
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from kubernetes import client
from kubernetes import config as kube_config
from kubernetes.client.rest import ApiException

from swiftdeploy.fsutil import atomic_write
from swiftdeploy.ports import free_port, is_listening

REPO = Path(__file__).resolve().parents[2]
KUBE_TOOLS = REPO / ".tools" / "kube"
GATEWAY_NAMESPACE = "gateway"
GATEWAY_NAME = "swiftdeploy-gw"
GATEWAY_CLASS = "swiftdeploy"
GATEWAY_GROUP = "gateway.networking.k8s.io"
NODE_NAME = "kwok-node-0"
# Disjoint from kwok's pod IPs (--cidr below), as on a real cluster.
SERVICE_CIDR = "10.96.0.0/24"
POD_CIDR = "10.244.0.0/16"
START_TIMEOUT_S = 60.0
STOP_GRACE_S = 5.0

T = TypeVar("T")


class ClusterError(RuntimeError):
    """The control plane did not come up; the message carries the failing part's log."""


def _log_tail(path: Path, lines: int = 15) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:])


@dataclass
class _Process:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path


def _spawn(
    name: str, argv: list[str], workdir: Path, env: dict[str, str] | None = None
) -> _Process:
    log = workdir / f"{name}.log"
    with log.open("ab") as out:
        # Its own session, so stop() can signal the whole group and nothing outlives it.
        popen = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=workdir,
            env=env,
            start_new_session=True,
        )
    return _Process(name, popen, log)


def _stop_processes(processes: Iterable[_Process]) -> None:
    """SIGTERM to every group at once, then SIGKILL to what is still there after the grace."""
    running = [p for p in processes if p.popen.poll() is None]
    for p in running:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(p.popen.pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_GRACE_S
    for p in running:
        try:
            p.popen.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.popen.pid, signal.SIGKILL)
            p.popen.wait(timeout=STOP_GRACE_S)


class _Pki:
    """A throwaway CA and the certificates issued by it (ECDSA P-256: fast to make)."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.ca_key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "swiftdeploy-test-ca")])
        now = datetime.datetime.now(datetime.UTC)
        self.ca_cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self.ca_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=2))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    key_cert_sign=True,
                    crl_sign=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .sign(self.ca_key, hashes.SHA256())
        )
        self.ca_pem = self.ca_cert.public_bytes(serialization.Encoding.PEM)
        self.ca_path = directory / "ca.crt"
        self.ca_path.write_bytes(self.ca_pem)

    def issue(
        self, name: str, common_name: str, orgs: Iterable[str] = (), server: bool = False
    ) -> tuple[Path, Path]:
        key = ec.generate_private_key(ec.SECP256R1())
        subject = [x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
        subject += [x509.NameAttribute(NameOID.ORGANIZATION_NAME, org) for org in orgs]
        now = datetime.datetime.now(datetime.UTC)
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name(subject))
            .issuer_name(self.ca_cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=2))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        )
        if server:
            builder = builder.add_extension(
                x509.SubjectAlternativeName(
                    [
                        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                        x509.IPAddress(ipaddress.ip_address("10.96.0.1")),
                        x509.DNSName("localhost"),
                        x509.DNSName("kubernetes.default.svc"),
                    ]
                ),
                critical=False,
            ).add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False)
        else:
            builder = builder.add_extension(
                x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False
            )
        cert = builder.sign(self.ca_key, hashes.SHA256())
        cert_path, key_path = self.dir / f"{name}.crt", self.dir / f"{name}.key"
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        atomic_write(key_path, _key_pem(key).decode())
        return cert_path, key_path


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _write_kubeconfig(
    path: Path,
    server: str,
    ca_pem: bytes,
    cert: Path,
    key: Path,
    user: str,
    namespace: str | None = None,
) -> Path:
    context: dict[str, str] = {"cluster": "swiftdeploy-test", "user": user}
    if namespace:
        context["namespace"] = namespace
    document = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "swiftdeploy-test",
                "cluster": {"server": server, "certificate-authority-data": _b64(ca_pem)},
            }
        ],
        "users": [
            {
                "name": user,
                "user": {
                    "client-certificate-data": _b64(cert.read_bytes()),
                    "client-key-data": _b64(key.read_bytes()),
                },
            }
        ],
        "contexts": [{"name": f"{user}@swiftdeploy-test", "context": context}],
        "current-context": f"{user}@swiftdeploy-test",
    }
    path.parent.mkdir(mode=0o700, exist_ok=True)
    atomic_write(path, yaml.safe_dump(document, sort_keys=False))
    return path


def _wait(what: str, check: Callable[[], T | None], timeout: float, alive: Callable[[], None]) -> T:
    """Poll `check` until it returns a value; `alive` raises if a process died meanwhile."""
    deadline = time.monotonic() + timeout
    while True:
        alive()
        value = check()
        if value is not None:
            return value
        if time.monotonic() >= deadline:
            raise ClusterError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.1)


def _binary(name: str) -> str:
    path = KUBE_TOOLS / "bin" / name
    if not os.access(path, os.X_OK):
        raise ClusterError(f"{path} is missing: run `make setup` (scripts/install-kube.sh)")
    return str(path)


USER_NAME = re.compile(r"^[a-z0-9]([a-z0-9.-]{0,61}[a-z0-9])?$")


@dataclass
class KubeCluster:
    workdir: Path
    server: str = ""
    admin_kubeconfig: Path = field(default_factory=Path)
    node_name: str = NODE_NAME
    start_seconds: float = 0.0
    _pki: _Pki | None = None
    _processes: list[_Process] = field(default_factory=list)
    _api: client.ApiClient | None = None

    @property
    def api(self) -> client.ApiClient:
        """An admin (system:masters) API client."""
        assert self._api is not None, "the cluster is not started"
        return self._api

    def api_client(self, kubeconfig: Path) -> client.ApiClient:
        return kube_config.new_client_from_config(config_file=str(kubeconfig))

    def user_kubeconfig(self, user: str, namespace: str) -> Path:
        """A kubeconfig that authenticates as `user`, in no group but system:authenticated."""
        if not USER_NAME.match(user) or not USER_NAME.match(namespace):
            raise ValueError(f"user and namespace must be DNS labels, got {user!r}, {namespace!r}")
        assert self._pki is not None
        cert, key = self._pki.issue(f"user-{user}", user)
        return _write_kubeconfig(
            self.workdir / "kubeconfig" / f"{user}-{namespace}.yaml",
            self.server,
            self._pki.ca_pem,
            cert,
            key,
            user,
            namespace,
        )

    def create_namespace(self, name: str) -> None:
        """Creates the namespace and waits for its default ServiceAccount, without which
        the ServiceAccount admission refuses pods and ReplicaSets back off."""
        core = client.CoreV1Api(self.api)
        core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
        _wait(
            f"the default ServiceAccount in {name}",
            lambda: _exists(lambda: core.read_namespaced_service_account("default", name)),
            20,
            self._check_alive,
        )

    def delete_namespace(self, name: str) -> None:
        """Deletes it in the background: the namespace controller removes what is in it."""
        try:
            client.CoreV1Api(self.api).delete_namespace(name, propagation_policy="Background")
        except ApiException as exc:
            if exc.status != 404:
                raise

    @contextlib.contextmanager
    def unschedulable(self) -> Iterator[None]:
        """Cordons the fake node for the block: pods created meanwhile stay Pending
        (Unschedulable) and never become ready, as a canary that cannot start would;
        they are scheduled once the block ends."""
        core = client.CoreV1Api(self.api)
        core.patch_node(self.node_name, {"spec": {"unschedulable": True}})
        try:
            yield
        finally:
            core.patch_node(self.node_name, {"spec": {"unschedulable": False}})

    def logs(self, lines: int = 15) -> str:
        """The end of every part's log, for failure messages."""
        return "\n".join(
            f"--- {p.name} ({p.log}):\n{_log_tail(p.log, lines)}" for p in self._processes
        )

    def stop(self) -> None:
        if self._api is not None:
            self._api.close()
            self._api = None
        # One at a time, clients first: the API server then has no watches left to
        # drain and exits within a second (all at once, it can take the whole grace).
        for process in reversed(self._processes):
            _stop_processes([process])

    def _check_alive(self) -> None:
        for p in self._processes:
            code = p.popen.poll()
            if code is not None:
                raise ClusterError(
                    f"{p.name} exited with code {code}; its log {p.log}:\n{_log_tail(p.log)}"
                )

    def _start(self) -> None:
        started = time.monotonic()
        work = self.workdir
        pki = self._pki = _Pki(work / "pki")
        apiserver_cert, apiserver_key = pki.issue("apiserver", "kube-apiserver", server=True)
        sa_key = ec.generate_private_key(ec.SECP256R1())
        atomic_write(work / "pki" / "sa.key", _key_pem(sa_key).decode())
        (work / "pki" / "sa.pub").write_bytes(
            sa_key.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )
        etcd_port, etcd_peer, api_port = free_port(), free_port(), free_port()
        self.server = f"https://127.0.0.1:{api_port}"
        kubeconfigs = {}
        for name, common_name, orgs in (
            ("admin", "swiftdeploy-admin", ["system:masters"]),
            # Without a service account per controller (a slower start), the controller
            # manager's own identity needs every controller's rights.
            ("controller-manager", "system:kube-controller-manager", ["system:masters"]),
            ("scheduler", "system:kube-scheduler", []),
        ):
            cert, key = pki.issue(name, common_name, orgs)
            kubeconfigs[name] = _write_kubeconfig(
                work / "kubeconfig" / f"{name}.yaml", self.server, pki.ca_pem, cert, key, name
            )
        self.admin_kubeconfig = kubeconfigs["admin"]

        self._processes.append(
            _spawn(
                "etcd",
                [
                    _binary("etcd"),
                    "--name=default",
                    f"--data-dir={work / 'etcd'}",
                    f"--listen-client-urls=http://127.0.0.1:{etcd_port}",
                    f"--advertise-client-urls=http://127.0.0.1:{etcd_port}",
                    f"--listen-peer-urls=http://127.0.0.1:{etcd_peer}",
                    f"--initial-advertise-peer-urls=http://127.0.0.1:{etcd_peer}",
                    f"--initial-cluster=default=http://127.0.0.1:{etcd_peer}",
                    # A throwaway store: no fsync, so a busy disk cannot stall the API server.
                    "--unsafe-no-fsync",
                    "--log-level=warn",
                ],
                work,
            )
        )
        _wait(
            "etcd to listen",
            lambda: True if is_listening("127.0.0.1", etcd_port) else None,
            15,
            self._check_alive,
        )
        self._processes.append(
            _spawn(
                "kube-apiserver",
                [
                    _binary("kube-apiserver"),
                    f"--etcd-servers=http://127.0.0.1:{etcd_port}",
                    "--bind-address=127.0.0.1",
                    "--advertise-address=127.0.0.1",
                    f"--secure-port={api_port}",
                    # The endpoint reconciler refuses a loopback advertise address.
                    "--endpoint-reconciler-type=none",
                    f"--service-cluster-ip-range={SERVICE_CIDR}",
                    "--authorization-mode=RBAC",
                    "--anonymous-auth=false",
                    f"--client-ca-file={pki.ca_path}",
                    f"--tls-cert-file={apiserver_cert}",
                    f"--tls-private-key-file={apiserver_key}",
                    f"--service-account-key-file={work / 'pki' / 'sa.pub'}",
                    f"--service-account-signing-key-file={work / 'pki' / 'sa.key'}",
                    "--service-account-issuer=https://kubernetes.default.svc",
                    "--profiling=false",
                    "--v=1",
                ],
                work,
            )
        )
        admin_cert, admin_key = work / "pki" / "admin.crt", work / "pki" / "admin.key"
        tls = ssl.create_default_context(cafile=str(pki.ca_path))
        tls.load_cert_chain(str(admin_cert), str(admin_key))
        with httpx.Client(verify=tls, timeout=2.0) as http:

            def ready() -> bool | None:
                try:
                    return True if http.get(f"{self.server}/readyz").status_code == 200 else None
                except httpx.HTTPError:
                    return None

            _wait("kube-apiserver /readyz", ready, 40, self._check_alive)

        self._processes.append(
            _spawn(
                "kube-controller-manager",
                [
                    _binary("kube-controller-manager"),
                    f"--kubeconfig={kubeconfigs['controller-manager']}",
                    "--bind-address=127.0.0.1",
                    "--secure-port=0",
                    "--leader-elect=false",
                    f"--service-account-private-key-file={work / 'pki' / 'sa.key'}",
                    f"--root-ca-file={pki.ca_path}",
                    "--v=1",
                ],
                work,
            )
        )
        self._processes.append(
            _spawn(
                "kube-scheduler",
                [
                    _binary("kube-scheduler"),
                    f"--kubeconfig={kubeconfigs['scheduler']}",
                    "--bind-address=127.0.0.1",
                    "--secure-port=0",
                    "--leader-elect=false",
                    "--v=1",
                ],
                work,
            )
        )
        stages = sorted((KUBE_TOOLS / "stages").glob("*.yaml"))
        if not stages:
            raise ClusterError(f"no kwok stages in {KUBE_TOOLS / 'stages'}: run `make setup`")
        self._processes.append(
            _spawn(
                "kwok",
                [
                    _binary("kwok"),
                    f"--kubeconfig={self.admin_kubeconfig}",
                    "--manage-all-nodes=false",
                    "--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake",
                    f"--cidr={POD_CIDR}",
                    "--node-ip=127.0.0.1",
                    # The heartbeat stage renews the node's Lease only when kwok manages
                    # leases; without one the node controller marks every pod NotReady 40 s
                    # after the node's last status, and a longer rollout sees its canary
                    # turn unhealthy.
                    "--node-lease-duration-seconds=40",
                    *(f"--config={s}" for s in stages),
                ],
                work,
            )
        )
        self._api = self.api_client(self.admin_kubeconfig)
        core = client.CoreV1Api(self.api)
        core.create_node(
            {
                "apiVersion": "v1",
                "kind": "Node",
                "metadata": {
                    "name": NODE_NAME,
                    "annotations": {"kwok.x-k8s.io/node": "fake"},
                    "labels": {
                        "kubernetes.io/hostname": NODE_NAME,
                        "kubernetes.io/os": "linux",
                        "kubernetes.io/arch": "amd64",
                        "type": "kwok",
                    },
                },
                "status": {
                    "allocatable": {"cpu": "32", "memory": "256Gi", "pods": "110"},
                    "capacity": {"cpu": "32", "memory": "256Gi", "pods": "110"},
                },
            }
        )

        # kwok readies the node while the CRDs are being installed.
        self._install_gateway_api()

        def node_ready() -> bool | None:
            node = core.read_node(NODE_NAME)
            conditions = node.status.conditions or []
            return (
                True if any(c.type == "Ready" and c.status == "True" for c in conditions) else None
            )

        _wait(f"node {NODE_NAME} to be Ready (kwok)", node_ready, 30, self._check_alive)
        _wait(
            "the default ServiceAccount in namespace default",
            lambda: _exists(lambda: core.read_namespaced_service_account("default", "default")),
            30,
            self._check_alive,
        )
        self.start_seconds = time.monotonic() - started

    def _install_gateway_api(self) -> None:
        extensions = client.ApiextensionsV1Api(self.api)
        crds = [
            document
            for path in sorted((KUBE_TOOLS / "gateway-api-crds").glob("*.yaml"))
            for document in yaml.safe_load_all(path.read_text())
            if document and document.get("kind") == "CustomResourceDefinition"
        ]
        # Side by side: the API server spends most of a create compiling the CEL rules.
        with ThreadPoolExecutor(max_workers=4) as pool:
            list(pool.map(extensions.create_custom_resource_definition, crds))
        names = [crd["metadata"]["name"] for crd in crds]
        if not names:
            raise ClusterError(f"no Gateway API CRDs in {KUBE_TOOLS / 'gateway-api-crds'}")

        def established() -> bool | None:
            for name in names:
                status = extensions.read_custom_resource_definition(name).status
                conditions = (status.conditions if status else None) or []
                if not any(c.type == "Established" and c.status == "True" for c in conditions):
                    return None
            return True

        _wait("the Gateway API CRDs to be Established", established, 30, self._check_alive)
        client.CoreV1Api(self.api).create_namespace(
            client.V1Namespace(metadata=client.V1ObjectMeta(name=GATEWAY_NAMESPACE))
        )
        custom = client.CustomObjectsApi(self.api)
        custom.create_cluster_custom_object(
            GATEWAY_GROUP,
            "v1",
            "gatewayclasses",
            {
                "apiVersion": f"{GATEWAY_GROUP}/v1",
                "kind": "GatewayClass",
                "metadata": {"name": GATEWAY_CLASS},
                "spec": {"controllerName": "swiftdeploy.test/fake-data-plane"},
            },
        )
        custom.create_namespaced_custom_object(
            GATEWAY_GROUP,
            "v1",
            GATEWAY_NAMESPACE,
            "gateways",
            {
                "apiVersion": f"{GATEWAY_GROUP}/v1",
                "kind": "Gateway",
                "metadata": {"name": GATEWAY_NAME, "namespace": GATEWAY_NAMESPACE},
                "spec": {
                    "gatewayClassName": GATEWAY_CLASS,
                    "listeners": [
                        {
                            "name": "http",
                            "port": 80,
                            "protocol": "HTTP",
                            "allowedRoutes": {"namespaces": {"from": "All"}},
                        }
                    ],
                },
            },
        )


def _exists(read: Callable[[], object]) -> bool | None:
    try:
        read()
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise
    return True


def start_cluster(workdir: Path) -> KubeCluster:
    """Starts the control plane in `workdir` (logs, certificates, etcd data); returns once
    /readyz passes, the fake node is Ready, the Gateway API is installed and `default`
    has its ServiceAccount. Everything started is stopped again if any step fails."""
    workdir.mkdir(parents=True, exist_ok=True)
    for name in ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok"):
        _binary(name)
    cluster = KubeCluster(workdir)
    try:
        cluster._start()
    except BaseException as exc:
        logs = cluster.logs()
        cluster.stop()
        if isinstance(exc, ClusterError | ApiException):
            raise ClusterError(f"the test cluster did not start: {exc}\n{logs}") from exc
        raise
    return cluster
