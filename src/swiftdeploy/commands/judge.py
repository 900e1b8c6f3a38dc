"""`swiftdeploy judge ...`: init, serve, install and replay of the judge (docs/judge.md).

The judge answers another controller's canary analysis (Argo Rollouts' `web` metric,
Kargo's verification through it, Flagger's webhooks); the work is in
`swiftdeploy.judge`, these are the verbs around it.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

import httpx

from swiftdeploy.audit.log import AuditLog
from swiftdeploy.commands.audit import load_trail
from swiftdeploy.commands.init import copy_policies
from swiftdeploy.commands.kube_install import DEFAULT_IMAGE, Obj, yaml_documents
from swiftdeploy.errors import BadInputError
from swiftdeploy.fsutil import atomic_write, private_dir
from swiftdeploy.judge.config import DEFAULT_CONFIG, LoadedJudge, load_judge
from swiftdeploy.judge.replay import Replayed, judge_records, replay
from swiftdeploy.judge.server import JudgeServer, serve
from swiftdeploy.judge.service import Judge, prometheus_for, resolve_tokens
from swiftdeploy.manifest import EnvSecret, KubeSecret, Policy
from swiftdeploy.policy import create_engine

DEFAULT_CONFIG_FILE = "judge.yaml"
NAME = "swiftdeploy-judge"
CONFIG_MOUNT = "/etc/swiftdeploy-judge"  # the ConfigMap, read-only
WORK_DIR = "/var/lib/swiftdeploy-judge"  # its data and trail (an emptyDir; a PVC keeps them)
SECRETS_DIR = "/var/run/secrets/swiftdeploy-judge"
PORT = 8080


def init(directory: Path, force: bool) -> list[Path]:
    """A commented judge.yaml and the shipped policies beside it."""
    path = directory / DEFAULT_CONFIG_FILE
    if path.exists() and not force:
        raise BadInputError(f"{path} already exists", hint="pass --force to overwrite")
    directory.mkdir(parents=True, exist_ok=True)
    atomic_write(path, DEFAULT_CONFIG, mode=0o644)
    load_judge(path)  # what init writes must load
    return [path, *copy_policies(directory / "policies", force)]


def open_judge(
    loaded: LoadedJudge,
    client: httpx.Client,
    environ: Mapping[str, str] | None = None,
    clock: Callable[[], float] | None = None,
) -> tuple[Judge, dict[str, str]]:
    """The judge of a config and its callers' tokens (every one resolved, or an error)."""
    tokens = resolve_tokens(loaded, environ)
    config = loaded.config
    policy = create_engine(
        config.policy.engine,
        directory=loaded.policy_dir,
        url=config.policy.opa.url,
        timeout=config.policy.opa.timeout,
    )
    private_dir(loaded.data_dir)
    private_dir(loaded.audit_path.parent)
    log = AuditLog(
        loaded.audit_path,
        config.audit.max_bytes,
        secrets=list(tokens.values()),
        command=["swiftdeploy", "judge", "serve"],
    )
    extra: dict[str, Any] = {"clock": clock} if clock is not None else {}
    return Judge(loaded, prometheus_for(loaded, client), policy, log, **extra), tokens


@dataclass
class Running:
    """A judge serving in this process (tests and `serve`): its address and its stop."""

    server: JudgeServer
    thread: threading.Thread
    client: httpx.Client

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host!s}:{port}"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=10)
        self.client.close()


def start(
    loaded: LoadedJudge,
    log: Callable[[str], None],
    *,
    environ: Mapping[str, str] | None = None,
    port: int | None = None,
) -> Running:
    """Open the judge and serve it on a thread; `port` overrides the config's (0: any)."""
    client = httpx.Client(trust_env=False)
    judge, tokens = open_judge(loaded, client, environ)
    host, configured = loaded.config.host_port
    server = serve(judge, tokens, log, host, configured if port is None else port)
    thread = threading.Thread(target=server.serve_forever, args=(0.2,), daemon=True)
    thread.start()
    return Running(server, thread, client)


def serve_until_stopped(loaded: LoadedJudge, log: Callable[[str], None]) -> None:
    """`judge serve`: until SIGTERM or SIGINT; calls in flight finish first."""
    running = start(loaded, log)
    log(f"judge listening on {running.url} (config {loaded.path})")
    stopped = threading.Event()

    def stop(signum: int, frame: FrameType | None) -> None:
        stopped.set()

    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, stop)
    stopped.wait()
    running.stop()
    log("judge stopped")


# --- install ----------------------------------------------------------------------------


def install_objects(
    loaded: LoadedJudge, namespace: str, image: str = DEFAULT_IMAGE, tokens_secret: str = NAME
) -> list[Obj]:
    """The judge in a cluster: a ServiceAccount that mounts no API token and is bound to
    no Role (the judge never calls the API server), its config and policies in a
    ConfigMap, the callers' tokens from Secrets, a Deployment and a Service."""
    config = loaded.config
    labels = {"app.kubernetes.io/name": NAME, "app.kubernetes.io/managed-by": "swiftdeploy"}
    meta = {"name": NAME, "namespace": namespace, "labels": labels}
    files = {DEFAULT_CONFIG_FILE: loaded.path.read_text(encoding="utf-8")}
    policies = loaded.policy_dir
    for path in sorted(policies.glob("*.rego")) if policies.is_dir() else []:
        if not path.name.endswith("_test.rego"):
            files[f"policies.{path.name}"] = path.read_text(encoding="utf-8")
    items = [
        {"key": key, "path": key.replace("policies.", f"{config.policy.directory}/", 1)}
        for key in files
    ]
    env: list[Obj] = [
        {"name": "HOME", "value": WORK_DIR},
        {"name": "USER", "value": NAME},  # the trail's actor: the uid has no account
        {"name": "SWIFTDEPLOY_CONFIG_HOME", "value": f"{WORK_DIR}/keys"},  # the audit key
        {"name": "PYTHONDONTWRITEBYTECODE", "value": "1"},
    ]
    mounted: dict[str, list[str]] = {}
    for caller in config.callers:
        ref: EnvSecret | KubeSecret = caller.token
        if isinstance(ref, EnvSecret):
            key_ref = {"name": tokens_secret, "key": ref.env}
            env.append({"name": ref.env, "valueFrom": {"secretKeyRef": key_ref}})
        else:
            mounted.setdefault(ref.secret, []).append(ref.key)
    mounts: list[Obj] = [
        {"name": "config", "mountPath": CONFIG_MOUNT, "readOnly": True},
        {"name": "work", "mountPath": WORK_DIR},
        {"name": "tmp", "mountPath": "/tmp"},  # noqa: S108
    ]
    volumes: list[Obj] = [
        {"name": "config", "configMap": {"name": NAME, "items": items}},
        {"name": "work", "emptyDir": {}},
        {"name": "tmp", "emptyDir": {}},
    ]
    for index, (secret, keys) in enumerate(sorted(mounted.items())):
        mounts.append(
            {"name": f"token-{index}", "mountPath": f"{SECRETS_DIR}/{secret}", "readOnly": True}
        )
        secret_items = [{"key": key, "path": key} for key in sorted(set(keys))]
        volumes.append(
            {"name": f"token-{index}", "secret": {"secretName": secret, "items": secret_items}}
        )
    # the ConfigMap is read-only: the judge runs from a copy, its data and trail beside it
    command = (
        f"cp -rL {CONFIG_MOUNT}/. {WORK_DIR}/ && exec swiftdeploy judge serve"
        f" -c {WORK_DIR}/{DEFAULT_CONFIG_FILE} --listen 0.0.0.0:{PORT}"
        f" --secrets-dir {SECRETS_DIR}"
    )
    probe = {"httpGet": {"path": "/healthz", "port": PORT}, "periodSeconds": 10}
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": meta,
        # one replica: an analysis's looks are counted under one process's lock
        "spec": {
            "replicas": 1,
            "strategy": {"type": "Recreate"},
            "selector": {"matchLabels": {"app.kubernetes.io/name": NAME}},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "serviceAccountName": NAME,
                    "automountServiceAccountToken": False,
                    "terminationGracePeriodSeconds": 30,
                    "securityContext": {"runAsNonRoot": True, "runAsUser": 10001},
                    "containers": [
                        {
                            "name": "judge",
                            "image": image,
                            "imagePullPolicy": "IfNotPresent",
                            "command": ["sh", "-c", command],
                            "ports": [{"name": "http", "containerPort": PORT}],
                            "env": env,
                            "livenessProbe": probe,
                            "readinessProbe": {
                                **probe,
                                "httpGet": {"path": "/readyz", "port": PORT},
                            },
                            "securityContext": {
                                "allowPrivilegeEscalation": False,
                                "readOnlyRootFilesystem": True,
                                "capabilities": {"drop": ["ALL"]},
                            },
                            "volumeMounts": mounts,
                        }
                    ],
                    "volumes": volumes,
                },
            },
        },
    }
    return [
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": meta,
            "automountServiceAccountToken": False,
        },
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta, "data": files},
        deployment,
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": meta,
            "spec": {
                "selector": {"app.kubernetes.io/name": NAME},
                "ports": [{"name": "http", "port": 80, "targetPort": PORT}],
            },
        },
    ]


def install_yaml(
    loaded: LoadedJudge, namespace: str, image: str = DEFAULT_IMAGE, tokens_secret: str = NAME
) -> str:
    envs = [c.token.env for c in loaded.config.callers if isinstance(c.token, EnvSecret)]
    literal = " ".join(f"--from-literal={env}=$(openssl rand -hex 32)" for env in envs)
    create = (
        f"#   kubectl -n {namespace} create secret generic {tokens_secret} {literal}\n"
        if envs
        else ""
    )
    return (
        f"# SwiftDeploy's judge in namespace {namespace}: `kubectl apply -f` this (or commit\n"
        "# it for Argo CD / Flux). It has no Role: it never calls the API server. Callers'\n"
        "# tokens come from Secrets you create, e.g.\n"
        f"{create}" + yaml_documents(install_objects(loaded, namespace, image, tokens_secret))
    )


# --- replay -----------------------------------------------------------------------------


@dataclass(frozen=True)
class ReplayReport:
    rows: list[Replayed]
    warnings: list[str]

    @property
    def flips(self) -> list[Replayed]:
        return [row for row in self.rows if row.flipped]


def replay_trail(
    loaded: LoadedJudge,
    *,
    trail: Path | None = None,
    policies: Path | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> ReplayReport:
    """The judge's recorded answers (its verified trail) under another policy directory
    and/or other settings (`overrides` of the config's `policy:`: alpha, beta, detect,
    thresholds)."""
    path = trail if trail is not None else loaded.audit_path
    verified = load_trail(path)
    merged = loaded.config.policy.model_dump(by_alias=True)
    for key, value in (overrides or {}).items():
        nested = merged.get(key)
        merged[key] = {**nested, **value} if isinstance(nested, dict) else value
    try:
        policy = Policy.model_validate(merged)
    except ValueError as exc:
        raise BadInputError(f"replay settings: {exc}".splitlines()[0]) from None
    engine = create_engine(
        policy.engine,
        directory=policies if policies is not None else loaded.policy_dir,
        url=policy.opa.url,
        timeout=policy.opa.timeout,
    )
    try:
        records = judge_records(verified.records)
        if not records:
            return ReplayReport([], [*verified.warnings, f"no judge answers in {path}"])
        return ReplayReport(replay(records, engine, policy), verified.warnings)
    finally:
        engine.close()
