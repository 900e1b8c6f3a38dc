"""The objects a service is made of, as the API server takes them (pure: no calls).

- a Deployment and a Service per track, `<svc>-stable` and `<svc>-canary`, labelled
  app=<svc>, track, version (the label convention the default PromQL selects on);
- the HTTPRoute `<svc>` as SwiftDeploy creates it: header rules first (`X-Canary:
  always` to the canary, `never` to the stable), then the weighted split (route.py
  changes only those rules' backendRefs once the route exists);
- the state ConfigMap `<svc>-swiftdeploy-state` and the Lease `<svc>-swiftdeploy`;
- the Secret `<svc>-swiftdeploy-env` with the secret `service.env` values, which the
  Deployments reference rather than carry.
"""

from __future__ import annotations

from typing import Any

from swiftdeploy.manifest import Manifest, SecretValue
from swiftdeploy.state import Track

MANAGED_BY = "app.kubernetes.io/managed-by"
Obj = dict[str, Any]


def labels(manifest: Manifest) -> dict[str, str]:
    """What marks every object of the service (teardown deletes by these)."""
    return {"app": manifest.service.name, MANAGED_BY: "swiftdeploy"}


def selector(manifest: Manifest, track: Track | None = None) -> str:
    base = f"app={manifest.service.name},{MANAGED_BY}=swiftdeploy"
    return f"{base},track={track}" if track else base


def track_name(manifest: Manifest, track: Track) -> str:
    return f"{manifest.service.name}-{track}"


def route_name(manifest: Manifest) -> str:
    return manifest.service.name


def state_name(manifest: Manifest) -> str:
    return f"{manifest.service.name}-swiftdeploy-state"


def lease_name(manifest: Manifest) -> str:
    return f"{manifest.service.name}-swiftdeploy"


def env_secret_name(manifest: Manifest) -> str:
    return f"{manifest.service.name}-swiftdeploy-env"


def _secrets(manifest: Manifest) -> dict[str, str]:
    return {
        name: value.value
        for name, value in manifest.service.env.items()
        if isinstance(value, SecretValue) and value.secret
    }


def env_secret(manifest: Manifest) -> Obj | None:
    """The secret env values, or None when there are none."""
    secrets = _secrets(manifest)
    if not secrets:
        return None
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": _meta(manifest, env_secret_name(manifest)),
        "type": "Opaque",
        "stringData": secrets,
    }


def _env(manifest: Manifest, track: Track, version: str) -> list[Obj]:
    secrets = _secrets(manifest)
    plain = {
        **{k: v for k, v in manifest.service.plain_env().items() if k not in secrets},
        "SWIFTDEPLOY_TRACK": track,
        "SWIFTDEPLOY_VERSION": version,
    }
    env: list[Obj] = [{"name": k, "value": v} for k, v in sorted(plain.items())]
    ref = env_secret_name(manifest)
    env += [
        {"name": k, "valueFrom": {"secretKeyRef": {"name": ref, "key": k}}} for k in sorted(secrets)
    ]
    return env


def _meta(manifest: Manifest, name: str, **extra: str) -> Obj:
    return {
        "name": name,
        "namespace": manifest.kubernetes.namespace,
        "labels": {**labels(manifest), **extra},
    }


def deployment(manifest: Manifest, track: Track, version: str, replicas: int) -> Obj:
    service = manifest.service
    pod_labels = {
        "app": service.name,
        "track": track,
        "version": version,
        MANAGED_BY: "swiftdeploy",
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _meta(manifest, track_name(manifest, track), track=track, version=version),
        "spec": {
            "replicas": replicas,
            # The selector cannot change after creation: the version is not in it.
            "selector": {"matchLabels": {"app": service.name, "track": track}},
            # A new pod is ready before an old one goes: no request finds no replica.
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1},
            },
            "template": {
                "metadata": {"labels": pod_labels},
                "spec": {
                    "containers": [
                        {
                            "name": service.name,
                            "image": service.image_for(version),
                            "ports": [{"name": "http", "containerPort": service.port}],
                            "env": _env(manifest, track, version),
                            "readinessProbe": {
                                "httpGet": {"path": service.health, "port": "http"},
                                "periodSeconds": 1,
                                "failureThreshold": 3,
                            },
                        }
                    ]
                },
            },
        },
    }


def service(manifest: Manifest, track: Track) -> Obj:
    svc = manifest.service
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _meta(manifest, track_name(manifest, track), track=track),
        "spec": {
            "selector": {"app": svc.name, "track": track},
            "ports": [{"name": "http", "port": svc.port, "targetPort": "http"}],
        },
    }


def http_route(manifest: Manifest, canary_weight: int, canary: bool) -> Obj:
    """The split: without a canary, every request to the stable (and no rule names a
    canary Service that does not exist)."""
    header = manifest.traffic.canary_header
    port = manifest.service.port
    stable_ref = {"name": track_name(manifest, "stable"), "port": port}
    canary_ref = {"name": track_name(manifest, "canary"), "port": port}
    weight = canary_weight if canary else 0
    rules: list[Obj] = []
    if canary:
        rules.append(
            {
                "matches": [{"headers": [{"name": header, "value": "always"}]}],
                "backendRefs": [canary_ref],
            }
        )
    rules.append(
        {
            "matches": [{"headers": [{"name": header, "value": "never"}]}],
            "backendRefs": [stable_ref],
        }
    )
    split = [{**stable_ref, "weight": 100 - weight}]
    if canary:
        split.append({**canary_ref, "weight": weight})
    rules.append({"backendRefs": split})
    gateway = manifest.kubernetes.gateway
    return {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": _meta(manifest, route_name(manifest)),
        "spec": {
            "parentRefs": [{"name": gateway.name, "namespace": gateway.namespace}],
            "rules": rules,
        },
    }


def state_config_map(manifest: Manifest, text: str) -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": _meta(manifest, state_name(manifest)),
        "data": {"state.json": text},
    }
