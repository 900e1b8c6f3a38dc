"""A real Kubernetes control plane for tests, on loopback ports, without kubelets.

``scripts/install-kube.sh .tools/bin`` provides the binaries (etcd, kube-apiserver,
kube-controller-manager, kube-scheduler, kwok) and ``.tools/share/kube`` (the Gateway
API CRDs and kwok's stages). ``ControlPlane`` starts them with certificates made by
openssl, registers one fake Node that kwok keeps Ready (so pods get scheduled and kwok
marks them Running with fake IPs: no container ever runs), installs the Gateway API CRDs
and writes an admin kubeconfig. Every process logs to ``<workdir>/logs/<name>.log``.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import ssl
import subprocess
import time
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx
import yaml

from swiftdeploy.ports import free_port

FAKE_NODE = "kwok-node-0"
SERVICE_CIDR = "10.0.0.0/24"
POD_CIDR = "10.244.0.0/24"  # kwok hands out these fake pod IPs; nothing ever connects to them
SA_ISSUER = "https://kubernetes.default.svc.cluster.local"
FIELD_MANAGER = "swiftdeploy-tests"
# Where server-side apply puts the cluster-scoped kinds that the Gateway API install has.
_ADMISSION = "/apis/admissionregistration.k8s.io/v1"
_CLUSTER_KINDS = {
    "CustomResourceDefinition": "/apis/apiextensions.k8s.io/v1/customresourcedefinitions",
    "ValidatingAdmissionPolicy": f"{_ADMISSION}/validatingadmissionpolicies",
    "ValidatingAdmissionPolicyBinding": f"{_ADMISSION}/validatingadmissionpolicybindings",
    "Node": "/api/v1/nodes",
}
_P256 = ("-pkeyopt", "ec_paramgen_curve:P-256")
# util-linux's setpriv execs the command after asking the kernel to SIGKILL it when the
# test process dies without calling stop() (a CI time-out, a kill -9).
_DIE_WITH_PARENT = ("setpriv", "--pdeathsig", "KILL", "--") if shutil.which("setpriv") else ()


class ControlPlaneError(RuntimeError):
    pass


class ControlPlane:
    """etcd + kube-apiserver + kube-controller-manager + kube-scheduler + kwok.

    ``tools`` is the directory holding ``bin/`` and ``share/kube/`` (``.tools``);
    ``workdir`` is a scratch directory for certificates, kubeconfigs, data and logs.
    """

    BINARIES = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok")

    def __init__(self, tools: Path, workdir: Path, pod_delay: float | None = None) -> None:
        """``pod_delay``: seconds kwok waits before each step of a pod's life (created,
        ready, deleted...); None keeps kwok's stock delays (1 s plus up to 5 s of jitter;
        deletion waits out the grace period)."""
        self.bin = tools / "bin"
        self.share = tools / "share" / "kube"
        self.pod_delay = pod_delay
        self.workdir = workdir
        self.pki = workdir / "pki"
        self.logs = workdir / "logs"
        self.apiserver_port = 0
        self.startup_seconds: float | None = None
        self._procs: dict[str, subprocess.Popen[bytes]] = {}
        missing = [
            str(p)
            for p in (*(self.bin / b for b in self.BINARIES), self.share / "gateway-api")
            if not p.exists()
        ]
        if missing:
            raise ControlPlaneError(
                f"missing {', '.join(missing)}: run scripts/install-kube.sh {self.bin}"
            )

    @property
    def server(self) -> str:
        return f"https://127.0.0.1:{self.apiserver_port}"

    @property
    def kubeconfig(self) -> Path:
        """An admin (system:masters) kubeconfig."""
        return self.workdir / "admin.kubeconfig"

    @property
    def ca_cert(self) -> Path:
        return self.pki / "ca.crt"

    # --- lifecycle ----------------------------------------------------------------

    def start(self, timeout: float = 60) -> None:
        """Starts everything and returns once the cluster is usable: /readyz passes, the
        Gateway API CRDs are Established, the fake Node is Ready and the controller
        manager has made the default ServiceAccount."""
        began = time.monotonic()
        deadline = began + timeout
        for d in (self.pki, self.logs):
            d.mkdir(parents=True, exist_ok=True)
        try:
            self._make_certificates()
            etcd_port = self._start_etcd()
            self._wait(deadline, "etcd", lambda: self._etcd_healthy(etcd_port))
            self._start_apiserver(etcd_port)
            self.write_kubeconfig(self.kubeconfig, cert=self.pki / "admin.crt")
            for name, user in (
                ("kube-controller-manager", "system:kube-controller-manager"),
                ("kube-scheduler", "system:kube-scheduler"),
            ):
                self.write_kubeconfig(
                    self.workdir / f"{name}.kubeconfig", cert=self.issue_client_cert(user)[0]
                )
            with self.client() as api:
                self._wait(deadline, "kube-apiserver /readyz", lambda: _ok(api, "/readyz"))
                # Only now: they exit when RBAC's bootstrap roles are not there yet.
                self._start_controller_manager()
                self._start_scheduler()
                self._start_kwok()
                self._install_gateway_api(api)
                self.apply(api, _fake_node())
                self._wait(deadline, "Gateway API CRDs Established", lambda: _crds_ready(api))
                self._wait(deadline, f"node {FAKE_NODE} Ready", lambda: _node_ready(api))
                self._wait(
                    deadline,
                    "ServiceAccount default/default",
                    lambda: _ok(api, "/api/v1/namespaces/default/serviceaccounts/default"),
                )
        except BaseException:
            self.stop()
            raise
        self.startup_seconds = time.monotonic() - began

    def stop(self, grace: float = 10) -> None:
        """Ends every process started: SIGTERM, then SIGKILL after ``grace`` seconds.
        etcd goes last, so the API server does not spend its shutdown redialling it."""
        etcd = [p for name, p in self._procs.items() if name == "etcd"]
        others = [p for name, p in self._procs.items() if name != "etcd"]
        for group in (others, etcd):
            for proc in group:
                if proc.poll() is None:
                    proc.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + grace
            for proc in group:
                try:
                    proc.wait(max(0.0, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        self._procs.clear()

    def __enter__(self) -> ControlPlane:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def memory_mb(self) -> dict[str, float]:
        """Resident memory of each process, in MiB."""
        usage: dict[str, float] = {}
        for name, proc in self._procs.items():
            status = Path(f"/proc/{proc.pid}/status")
            for line in status.read_text().splitlines() if status.exists() else []:
                if line.startswith("VmRSS:"):
                    usage[name] = int(line.split()[1]) / 1024
        return usage

    # --- credentials ------------------------------------------------------------------

    def issue_client_cert(self, user: str, groups: tuple[str, ...] = ()) -> tuple[Path, Path]:
        """A client certificate (and key) signed by the cluster CA: CN=user, O=groups."""
        safe = user.replace(":", "_").replace("/", "_")
        subject = "".join(f"/O={g}" for g in groups) + f"/CN={user}"
        return self._cert(safe, subject, "extendedKeyUsage=clientAuth")

    def write_kubeconfig(
        self, path: Path, *, token: str | None = None, cert: Path | None = None
    ) -> Path:
        """A kubeconfig for this cluster that authenticates with a bearer token or a
        client certificate (``cert``; its key is ``cert`` with the suffix ``.key``)."""
        if token is not None and cert is None:
            user = {"token": token}
        elif cert is not None and token is None:
            user = {"client-certificate": str(cert), "client-key": str(cert.with_suffix(".key"))}
        else:
            raise ValueError("give exactly one of token= or cert=")
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "swiftdeploy-test",
                    "cluster": {"server": self.server, "certificate-authority": str(self.ca_cert)},
                }
            ],
            "users": [{"name": "user", "user": user}],
            "contexts": [
                {"name": "test", "context": {"cluster": "swiftdeploy-test", "user": "user"}}
            ],
            "current-context": "test",
        }
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        path.chmod(0o600)
        return path

    def create_token(self, namespace: str, service_account: str, seconds: int = 3600) -> str:
        """A bound token for an existing ServiceAccount (the TokenRequest API)."""
        with self.client() as api:
            r = api.post(
                f"/api/v1/namespaces/{namespace}/serviceaccounts/{service_account}/token",
                json={"spec": {"expirationSeconds": seconds}},
            )
            r.raise_for_status()
            return str(r.json()["status"]["token"])

    def client(self) -> httpx.Client:
        """An admin HTTP client for the API server (for set-up, not for the code under test)."""
        context = ssl.create_default_context(cafile=str(self.ca_cert))
        context.load_cert_chain(self.pki / "admin.crt", self.pki / "admin.key")
        return httpx.Client(base_url=self.server, verify=context, timeout=10)

    def apply(self, api: httpx.Client, obj: dict[str, Any]) -> None:
        """Server-side apply of a cluster-scoped object of a kind in ``_CLUSTER_KINDS``."""
        path = f"{_CLUSTER_KINDS[obj['kind']]}/{obj['metadata']['name']}"
        r = api.patch(
            path,
            params={"fieldManager": FIELD_MANAGER, "force": "true"},
            content=json.dumps(obj),
            headers={"Content-Type": "application/apply-patch+yaml"},
        )
        if r.status_code >= 300:
            raise ControlPlaneError(f"apply {path}: {r.status_code} {r.text[:300]}")

    # --- internals ---------------------------------------------------------------------

    def _cert(self, name: str, subject: str, *extensions: str) -> tuple[Path, Path]:
        crt, key = self.pki / f"{name}.crt", self.pki / f"{name}.key"
        ext = ["-addext", "basicConstraints=critical,CA:FALSE"]
        for e in ("keyUsage=critical,digitalSignature,keyEncipherment", *extensions):
            ext += ["-addext", e]
        _openssl(
            self.pki,
            *("req", "-x509", "-CA", "ca.crt", "-CAkey", "ca.key", "-days", "2"),
            *("-keyout", key.name, "-out", crt.name, "-subj", subject, *ext),
        )
        return crt, key

    def _make_certificates(self) -> None:
        (self.pki / "openssl.cnf").write_text("[req]\ndistinguished_name = dn\n[dn]\n")
        _openssl(
            self.pki,
            *("req", "-x509", "-days", "2", "-keyout", "ca.key", "-out", "ca.crt"),
            *("-subj", "/CN=swiftdeploy-test-ca", "-addext", "basicConstraints=critical,CA:TRUE"),
            *("-addext", "keyUsage=critical,keyCertSign,cRLSign"),
        )
        self._cert(
            "apiserver",
            "/CN=kube-apiserver",
            "extendedKeyUsage=serverAuth",
            "subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:kubernetes.default.svc",
        )
        self.issue_client_cert("admin", ("system:masters",))
        _openssl(self.pki, "genpkey", "-algorithm", "EC", "-out", "sa.key", *_P256)
        _openssl(self.pki, "pkey", "-in", "sa.key", "-pubout", "-out", "sa.pub")

    def _spawn(self, name: str, *args: str, env: dict[str, str] | None = None) -> None:
        with (self.logs / f"{name}.log").open("wb") as log:
            self._procs[name] = subprocess.Popen(
                [*_DIE_WITH_PARENT, str(self.bin / name), *args],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=self.workdir,
                env=env,
                start_new_session=True,  # a ^C on the test run reaches us, not them
            )

    def _start_etcd(self) -> int:
        client, peer = free_port(), free_port()
        peer_url = f"http://127.0.0.1:{peer}"
        self._spawn(
            "etcd",
            *("--name", "default", "--data-dir", str(self.workdir / "etcd")),
            f"--listen-client-urls=http://127.0.0.1:{client}",
            f"--advertise-client-urls=http://127.0.0.1:{client}",
            f"--listen-peer-urls={peer_url}",
            f"--initial-advertise-peer-urls={peer_url}",
            f"--initial-cluster=default={peer_url}",
            "--log-level=warn",
        )
        return client

    def _etcd_healthy(self, port: int) -> bool:
        try:
            r = httpx.get(f"http://127.0.0.1:{port}/health", timeout=1)
        except httpx.HTTPError:
            return False
        return r.status_code == 200 and r.json().get("health") == "true"

    def _start_apiserver(self, etcd_port: int) -> None:
        self.apiserver_port = free_port()
        pki = self.pki
        self._spawn(
            "kube-apiserver",
            f"--etcd-servers=http://127.0.0.1:{etcd_port}",
            f"--secure-port={self.apiserver_port}",
            "--bind-address=127.0.0.1",
            "--advertise-address=127.0.0.1",
            "--endpoint-reconciler-type=none",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            "--authorization-mode=RBAC",
            f"--cert-dir={self.workdir / 'apiserver'}",
            f"--client-ca-file={pki / 'ca.crt'}",
            f"--tls-cert-file={pki / 'apiserver.crt'}",
            f"--tls-private-key-file={pki / 'apiserver.key'}",
            f"--service-account-key-file={pki / 'sa.pub'}",
            f"--service-account-signing-key-file={pki / 'sa.key'}",
            f"--service-account-issuer={SA_ISSUER}",
            "--profiling=false",
            *self._etcd_workarounds(),
        )

    def _etcd_workarounds(self) -> list[str]:
        """Debian's etcd 3.4.23 cannot serve watch progress requests. With the API
        server's WatchList feature on, a watch from resourceVersion "" or "0" that allows
        bookmarks (client-go reflectors, e.g. kwok's) becomes a stream that needs them and
        fails at once, so kwok would only see changes on its periodic re-lists. With the
        feature off such watches behave as before. etcd 3.5+ needs nothing here."""
        version = subprocess.run(
            [str(self.bin / "etcd"), "--version"], capture_output=True, text=True, check=True
        ).stdout
        return ["--feature-gates=WatchList=false"] if "Version: 3.4." in version else []

    def _start_controller_manager(self) -> None:
        kubeconfig = self.workdir / "kube-controller-manager.kubeconfig"
        self._spawn(
            "kube-controller-manager",
            f"--kubeconfig={kubeconfig}",
            f"--authentication-kubeconfig={kubeconfig}",
            f"--authorization-kubeconfig={kubeconfig}",
            "--bind-address=127.0.0.1",
            f"--secure-port={free_port()}",
            f"--cert-dir={self.workdir / 'kube-controller-manager'}",
            "--leader-elect=false",
            "--use-service-account-credentials=true",
            f"--service-account-private-key-file={self.pki / 'sa.key'}",
            f"--root-ca-file={self.ca_cert}",
            f"--cluster-signing-cert-file={self.ca_cert}",
            f"--cluster-signing-key-file={self.pki / 'ca.key'}",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            "--profiling=false",
        )

    def _start_scheduler(self) -> None:
        kubeconfig = self.workdir / "kube-scheduler.kubeconfig"
        self._spawn(
            "kube-scheduler",
            f"--kubeconfig={kubeconfig}",
            f"--authentication-kubeconfig={kubeconfig}",
            f"--authorization-kubeconfig={kubeconfig}",
            "--bind-address=127.0.0.1",
            f"--secure-port={free_port()}",
            f"--cert-dir={self.workdir / 'kube-scheduler'}",
            "--leader-elect=false",
            "--profiling=false",
        )

    def _kwok_stages(self) -> list[Path]:
        stages = sorted((self.share / "kwok-stages").glob("*.yaml"))
        if self.pod_delay is None:
            return stages
        (self.workdir / "kwok-stages").mkdir(exist_ok=True)
        copies = []
        for path in stages:
            stage = yaml.safe_load(path.read_text())
            if stage["spec"]["resourceRef"]["kind"] == "Pod":
                stage["spec"]["delay"] = {"durationMilliseconds": int(self.pod_delay * 1000)}
            copies.append(self.workdir / "kwok-stages" / path.name)
            copies[-1].write_text(yaml.safe_dump(stage))
        return copies

    def _start_kwok(self) -> None:
        stages = self._kwok_stages()
        self._spawn(
            "kwok",
            f"--kubeconfig={self.kubeconfig}",
            *(f"--config={s}" for s in stages),
            "--manage-all-nodes=false",
            "--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake",
            "--node-ip=127.0.0.1",
            f"--cidr={POD_CIDR}",
            "--node-lease-duration-seconds=40",
            env={
                **os.environ,
                # kwok also reads ~/.kwok/kwok.yaml: keep a developer's own out of the tests
                "HOME": str(self.workdir),
            },
        )

    def _install_gateway_api(self, api: httpx.Client) -> None:
        for path in sorted((self.share / "gateway-api").glob("*.yaml")):
            for doc in yaml.safe_load_all(path.read_text()):
                if doc:
                    self.apply(api, doc)

    def _wait(self, deadline: float, what: str, ready: Any) -> None:
        while True:
            for name, proc in self._procs.items():
                if proc.poll() is not None:
                    raise ControlPlaneError(
                        f"{name} exited with {proc.returncode} while waiting for {what}:\n"
                        + self._log_tail(name)
                    )
            if ready():
                return
            if time.monotonic() > deadline:
                raise ControlPlaneError(f"timed out waiting for {what}; logs in {self.logs}")
            time.sleep(0.1)

    def _log_tail(self, name: str, lines: int = 15) -> str:
        text = (self.logs / f"{name}.log").read_text(errors="replace")
        return "\n".join(text.splitlines()[-lines:])


def _openssl(cwd: Path, *args: str) -> None:
    cmd = ["openssl", *args]
    if args[0] == "req":
        cmd += ["-config", "openssl.cnf", "-nodes", "-newkey", "ec", *_P256]
    done = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise ControlPlaneError(f"{' '.join(cmd)} failed: {done.stderr.strip()}")


def _ok(api: httpx.Client, path: str) -> bool:
    try:
        return api.get(path).status_code == 200
    except httpx.HTTPError:
        return False


def _crds_ready(api: httpx.Client) -> bool:
    r = api.get(_CLUSTER_KINDS["CustomResourceDefinition"])
    gateway = [c for c in r.json()["items"] if c["spec"]["group"] == "gateway.networking.k8s.io"]
    return bool(gateway) and all(_condition(c, "Established") for c in gateway)


def _node_ready(api: httpx.Client) -> bool:
    r = api.get(f"/api/v1/nodes/{FAKE_NODE}")
    return r.status_code == 200 and _condition(r.json(), "Ready")


def _condition(obj: dict[str, Any], kind: str) -> bool:
    conditions = obj.get("status", {}).get("conditions") or []
    return any(c["type"] == kind and c["status"] == "True" for c in conditions)


def _fake_node() -> dict[str, Any]:
    """A Node that only kwok serves (it matches kwok's annotation selector)."""
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": FAKE_NODE,
            "annotations": {"kwok.x-k8s.io/node": "fake", "node.alpha.kubernetes.io/ttl": "0"},
            "labels": {
                "type": "kwok",
                "kubernetes.io/hostname": FAKE_NODE,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
                "kubernetes.io/role": "agent",
                "node-role.kubernetes.io/agent": "",
            },
        },
        "spec": {"podCIDR": POD_CIDR},
    }
