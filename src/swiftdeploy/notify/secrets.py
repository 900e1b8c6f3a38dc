"""The secrets notifications and hooks read (URLs, tokens, the signing key), resolved
once when the driver starts: from its environment, or from a Kubernetes Secret in the
service's namespace. Values stay in memory: never in the state, the trail or a log."""

from __future__ import annotations

import base64
import binascii
import os
from collections.abc import Mapping

from swiftdeploy.errors import BadInputError, OperationalError, SwiftDeployError
from swiftdeploy.manifest import EnvSecret, KubeSecret, LoadedManifest


def describe(ref: EnvSecret | KubeSecret) -> str:
    """Where a secret comes from, for messages (never its value)."""
    if isinstance(ref, EnvSecret):
        return f"the environment variable {ref.env}"
    return f"key {ref.key} of the Secret {ref.secret}"


class Secrets:
    """Resolved secret values by reference; a setting that is no secret passes through."""

    def __init__(self, values: Mapping[EnvSecret | KubeSecret, str]) -> None:
        self._values = dict(values)

    def value(self, setting: str | EnvSecret | KubeSecret) -> str:
        if isinstance(setting, str):
            return setting
        return self._values[setting]

    def all_values(self) -> list[str]:
        """Every secret value: what a log line or an error must never contain."""
        return list(self._values.values())

    def redact(self, text: str) -> str:
        for secret in sorted(self._values.values(), key=len, reverse=True):
            if secret:
                text = text.replace(secret, "<secret>")
        return text


def resolve_secrets(loaded: LoadedManifest, environ: Mapping[str, str] | None = None) -> Secrets:
    """Every secret the manifest's notifications and hooks name, read now. A missing one
    is one clear error naming its field and where it was looked for, so the driver starts
    with all of them or not at all (nothing half-configured)."""
    env = os.environ if environ is None else environ
    values: dict[EnvSecret | KubeSecret, str] = {}
    for field, ref in loaded.manifest.secret_fields():
        if ref not in values:
            values[ref] = _read(loaded, field, ref, env)
    return Secrets(values)


def unresolved(loaded: LoadedManifest, environ: Mapping[str, str] | None = None) -> list[str]:
    """For `validate`: one line per secret that cannot be read from here, naming its
    field and why; a Secret this user may not read is said to be unchecked."""
    env = os.environ if environ is None else environ
    if loaded.manifest.runtime == "kubernetes":
        env = {}  # the driver's pod reads them, whose environment `kube install` writes
    problems: list[str] = []
    for field, ref in loaded.manifest.secret_fields():
        try:
            _read(loaded, field, ref, env)
        except SwiftDeployError as exc:
            problems.append(_unchecked(loaded, field, ref, exc))
    return problems


def _unchecked(
    loaded: LoadedManifest, field: str, ref: EnvSecret | KubeSecret, exc: SwiftDeployError
) -> str:
    if isinstance(ref, KubeSecret):
        # Only here: the kubernetes client is an extra a local project does not have.
        from swiftdeploy.runtime.kubernetes.api import KubeApiError

        if isinstance(exc, KubeApiError):
            why = "you may not read it" if exc.status in (401, 403) else exc.message
            return f"{loaded.where(field)}: {describe(ref)} could not be checked ({why})"
    return exc.one_line()


def _read(
    loaded: LoadedManifest, field: str, ref: EnvSecret | KubeSecret, env: Mapping[str, str]
) -> str:
    if isinstance(ref, KubeSecret):
        return _from_kube_secret(loaded, field, ref)
    found = env.get(ref.env)
    if found:
        return found
    state = "is empty" if found == "" else "is not set"
    if loaded.manifest.runtime == "kubernetes":
        # the driver runs in its pod, whose environment `kube install` writes
        raise BadInputError(
            f"{loaded.where(field)}: the environment variable {ref.env} {state} in the"
            " driver's pod, which reads it there; name a Secret instead: {secret: NAME, key: KEY}"
        )
    raise BadInputError(
        f"{loaded.where(field)}: the environment variable {ref.env} {state}; export it in"
        " the shell that runs `swiftdeploy rollout`"
    )


def _from_kube_secret(loaded: LoadedManifest, field: str, ref: KubeSecret) -> str:
    from swiftdeploy.runtime.kubernetes import kube_of

    secret = kube_of(loaded).get("Secret", ref.secret)
    namespace = loaded.manifest.kubernetes.namespace
    where = loaded.where(field)
    if secret is None:
        raise OperationalError(
            f"{where}: the Secret {ref.secret} does not exist in namespace {namespace}",
            hint=f"kubectl -n {namespace} create secret generic {ref.secret} "
            f"--from-literal={ref.key}=...",
        )
    encoded = (secret.get("data") or {}).get(ref.key)
    if not encoded:
        raise OperationalError(
            f"{where}: the Secret {ref.secret} in namespace {namespace} has no key {ref.key}",
            hint="add the key, or name the right one in the manifest",
        )
    try:
        return base64.b64decode(encoded, validate=True).decode("utf-8").strip()
    except (binascii.Error, UnicodeDecodeError):
        raise OperationalError(
            f"{where}: key {ref.key} of the Secret {ref.secret} is not UTF-8 text"
        ) from None
