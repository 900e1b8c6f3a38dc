"""The docker backend: each replica is a container of `service.image` at its version,
publishing `service.port` on a 127.0.0.1 port that the nginx router splits, as the
local backend's processes are. The platform (nginx, OPA, Prometheus) runs under the
project's supervisord, as on the local backend.

Secret env values (`service.env` entries with `secret: true`, and the chaos token)
are not given to the engine as environment, which `docker inspect` shows to anyone
who can reach the engine (and to agents that collect container configs): they are
written to `.swiftdeploy/docker-env/<replica>.env` (0444 in a 0700 directory),
mounted read-only at ENV_FILE, and exported by a `/bin/sh` wrapper before it execs
the image's own entrypoint and command. An image without /bin/sh cannot take them.
An image whose user is a host account's uid lets that account at them through /proc:
`user_warnings` says so (`runtime.image_user`).

The engine is driven through its API (the `docker` SDK; `DOCKER_HOST` and the other
`DOCKER_*` variables choose it). Every container carries labels naming the project,
its track, version and replica, so what the project runs is found by label: after a
kill -9 of the CLI, at teardown, and by `status`.

This module is a `runtime.base.Backend`: its module-level functions are the backend's.
It is the only one that imports the SDK, so other runtimes never load it.
"""

from __future__ import annotations

import hashlib
import io
import shlex
import shutil
import tarfile
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from swiftdeploy.errors import BadInputError, RuntimeProcessError
from swiftdeploy.fsutil import atomic_write, private_dir
from swiftdeploy.manifest import LoadedManifest, SecretValue
from swiftdeploy.registry import missing_extra
from swiftdeploy.runtime.base import BackendDeps, Check, ProcessInfo, TrackRuntime
from swiftdeploy.runtime.hosted import CHAOS_TOKEN_ENV, HostedTracks, replica_env
from swiftdeploy.runtime.image_user import host_holders, image_uid, shared_uid_warning
from swiftdeploy.runtime.supervisor import ProcessSupervisor
from swiftdeploy.state import FileStateStore, Replica, StateStore

try:  # the swiftdeploy[docker] extra
    import docker
    from docker.errors import APIError, DockerException, ImageNotFound, NotFound
    from docker.models.containers import Container
    from docker.types import LogConfig
    from requests import RequestException
except ModuleNotFoundError:
    raise missing_extra("docker") from None

LABEL = "io.swiftdeploy"
PROJECT_LABEL = f"{LABEL}.project"
TRACK_LABEL = f"{LABEL}.track"
VERSION_LABEL = f"{LABEL}.version"
REPLICA_LABEL = f"{LABEL}.replica"
START_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 10
# As supervisord's startsecs: a restarted container counts as running once it has
# stayed up this long, so a crash loop reads as one, not as a replica that runs.
STARTSECS = 1.0
ENGINE_HINT = "start it with `bash scripts/install-docker.sh start`, or point DOCKER_HOST at one"
# Where a replica's secret env values are, inside its container, and how they get in.
ENV_FILE = "/run/swiftdeploy/env"
ENV_WRAPPER = f'set -a; . {ENV_FILE}; set +a; exec "$@"'
# An image's /etc/passwd, read to learn its USER's uid, is the canary's: bounded.
PASSWD_LIMIT = 1 << 20

# The engine's container states in supervisord's words (what ProcessInfo speaks).
_STATES = {
    "created": "STARTING",
    "restarting": "BACKOFF",
    "running": "RUNNING",
    "paused": "STOPPED",
    "removing": "STOPPING",
    "exited": "EXITED",
    "dead": "FATAL",
}


def connect() -> docker.DockerClient:
    """A client of the engine the environment names, checked to answer."""
    try:
        client = docker.from_env(timeout=30)
        client.ping()
    except (DockerException, RequestException) as exc:
        raise RuntimeProcessError(
            f"the Docker engine is not reachable: {_first_line(exc)}", hint=ENGINE_HINT
        ) from None
    return client


@contextmanager
def _engine(what: str) -> Iterator[None]:
    """The engine failing (gone away, or refusing) as one line, not a traceback. The
    SDK raises its own errors, and the transport's for a socket that stopped answering."""
    try:
        yield
    except (DockerException, RequestException) as exc:
        raise RuntimeProcessError(
            f"the Docker engine failed {what}: {_first_line(exc)}", hint=ENGINE_HINT
        ) from None


def project_id(loaded: LoadedManifest) -> str:
    """A stable id of the project directory: what its containers' labels name."""
    return hashlib.sha256(str(loaded.project_dir.resolve()).encode()).hexdigest()[:16]


def project_filter(loaded: LoadedManifest) -> dict[str, str | list[str] | bool]:
    return {"label": f"{PROJECT_LABEL}={project_id(loaded)}"}


class DockerReplicas:
    """Replicas as containers: one per replica, restarted by the engine if it dies."""

    def __init__(self, loaded: LoadedManifest, client: docker.DockerClient) -> None:
        self.loaded = loaded
        self.client = client
        self.project = project_id(loaded)

    def container_name(self, name: str) -> str:
        return f"swiftdeploy-{self.project}-{name}"

    def start(self, replica: Replica) -> None:
        service = self.loaded.manifest.service
        image = service.image_for(replica.version)
        # A container of this name is left from an interrupted start: this one replaces it.
        self.stop(replica.name)
        with _engine(f"starting {replica.name}"):
            container = self._create(replica, image)
            self._wait_running(replica.name, container)

    @property
    def env_dir(self) -> Path:
        return self.loaded.state_dir / "docker-env"

    def env_file(self, name: str) -> Path:
        return self.env_dir / f"{name}.env"

    def _create(self, replica: Replica, image: str) -> Container:
        service = self.loaded.manifest.service
        env = replica_env(self.loaded, replica)
        hidden = {name: env.pop(name) for name in _secret_names(self.loaded) if name in env}
        try:
            container = self.client.containers.create(
                image,
                name=self.container_name(replica.name),
                labels={
                    PROJECT_LABEL: self.project,
                    TRACK_LABEL: replica.track,
                    VERSION_LABEL: replica.version,
                    REPLICA_LABEL: replica.name,
                },
                environment=env,
                **(self._hidden_env(replica.name, image, hidden) if hidden else {}),
                ports={f"{service.port}/tcp": ("127.0.0.1", replica.port)},
                restart_policy={"Name": "always"},
                # The canary is untrusted: no capabilities, no privilege gained by exec.
                cap_drop=["ALL"],
                security_opt=["no-new-privileges"],
                log_config=LogConfig(type="json-file", config={"max-size": "5m", "max-file": "1"}),
            )
            container.start()
        except ImageNotFound:
            raise RuntimeProcessError(
                f"{replica.name}: image {image} is not on the Docker engine",
                hint=_image_hint(service.image_for("VERSION")),
            ) from None
        except APIError as exc:
            why = f"secret env values reach the service through /bin/sh ({ENV_FILE})"
            raise RuntimeProcessError(
                f"{replica.name}: the engine refused to start {image}: {_first_line(exc)}",
                hint=why if hidden else None,
            ) from None
        return container

    def _hidden_env(self, name: str, image: str, hidden: dict[str, str]) -> dict[str, Any]:
        """What `containers.create` takes to give the service `hidden` without the engine
        knowing the values: the file, mounted read-only, and the wrapper that exports it."""
        path = self.env_file(name)
        private_dir(path.parent)
        lines = "".join(f"{key}={shlex.quote(value)}\n" for key, value in hidden.items())
        # 0444: the service may run as any user in the container; the 0700 directory
        # keeps other users of this machine out.
        atomic_write(path, lines, mode=0o444)
        config = self.client.images.get(image).attrs["Config"]
        argv = [*(config.get("Entrypoint") or []), *(config.get("Cmd") or [])]
        return {
            "entrypoint": ["/bin/sh", "-c", ENV_WRAPPER, "swiftdeploy-env"],
            "command": argv,
            "volumes": {str(path): {"bind": ENV_FILE, "mode": "ro"}},
        }

    def _wait_running(self, name: str, container: Container) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        status = "unknown"
        while time.monotonic() < deadline:
            try:
                container.reload()
            except NotFound:
                status = "removing"
                break
            state = container.attrs["State"]
            status = str(state["Status"])
            # Running for STARTSECS, as supervisord's programs must: one that dies at once
            # is reported here, not after the whole health-check timeout.
            if status == "running" and _up_for(state["StartedAt"]) >= STARTSECS:
                return
            if status in {"exited", "dead", "restarting"}:
                break
            time.sleep(0.05)
        raise RuntimeProcessError(
            f"{name} did not start ({_STATES.get(status, status)})", hint=f"see {self.logs(name)}"
        )

    def stop(self, name: str) -> None:
        with _engine(f"stopping {name}"):
            try:
                container = self.client.containers.get(self.container_name(name))
                # stop first: the service gets SIGTERM and its grace period, not SIGKILL.
                container.stop(timeout=STOP_TIMEOUT_S)
                container.remove(force=True)
            except NotFound:
                pass
        self.env_file(name).unlink(missing_ok=True)

    def inspect(self) -> dict[str, ProcessInfo]:
        found = {}
        for container in self.labelled():
            name = container.labels.get(REPLICA_LABEL)
            if name:
                found[name] = _process_info(name, container.attrs)
        return found

    def labelled(self) -> list[Container]:
        with _engine("listing the project's containers"):
            containers: list[Container] = self.client.containers.list(
                all=True, filters=project_filter(self.loaded), ignore_removed=True
            )
        return containers

    def logs(self, name: str) -> str:
        cname = self.container_name(name)
        try:
            tail = self.client.containers.get(cname).logs(tail=1).decode(errors="replace")
        except (DockerException, RequestException):
            tail = ""
        last = tail.strip().splitlines()[-1][:200] if tail.strip() else ""
        # The service's output is untrusted: nothing in it may drive the terminal.
        last = "".join(ch if ch.isprintable() else "?" for ch in last)
        return f"`docker logs {cname}`" + (f" (last line: {last})" if last else "")

    def check_version(self, version: str) -> None:
        image = self.loaded.manifest.service.image_for(version)
        if not image_present(self.client, image):
            raise BadInputError(
                f"image {image} (version {version}) is not on the Docker engine",
                hint=_image_hint(image),
            )


def _secret_names(loaded: LoadedManifest) -> list[str]:
    """The env names whose values must not reach the engine's container config."""
    service = loaded.manifest.service
    names = [k for k, v in service.env.items() if isinstance(v, SecretValue) and v.secret]
    return [*names, CHAOS_TOKEN_ENV] if service.chaos else names


def _process_info(name: str, attrs: dict[str, Any]) -> ProcessInfo:
    state = attrs["State"]
    word = _STATES.get(str(state["Status"]), "UNKNOWN")
    if word == "RUNNING":
        health = (state.get("Health") or {}).get("Status")
        if health == "unhealthy":
            word = "UNHEALTHY"
        elif attrs.get("RestartCount", 0) and _up_for(state["StartedAt"]) < STARTSECS:
            word = "STARTING"
    return ProcessInfo(name=name, state=word, pid=int(state.get("Pid") or 0))


def _up_for(started_at: str) -> float:
    # The engine writes UTC in RFC 3339 with nanoseconds; Python parses microseconds.
    stamp, _, fraction = started_at.rstrip("Z").partition(".")
    started = datetime.fromisoformat(stamp).replace(tzinfo=UTC)
    started += timedelta(microseconds=int((fraction + "000000")[:6]))
    return (datetime.now(UTC) - started).total_seconds()


class DockerTracks(HostedTracks):
    """HostedTracks whose teardown also removes every container the project labelled,
    whatever its state and whether or not the state knows it."""

    def __init__(self, deps: BackendDeps, launcher: DockerReplicas) -> None:
        assert deps.router is not None  # NGINX_ROUTED: open_fleet always builds one
        super().__init__(deps, deps.router, launcher)
        self.containers = launcher

    def teardown(self) -> list[int]:
        pids = []
        for container in self.containers.labelled():
            pid = int(container.attrs["State"].get("Pid") or 0)
            self.progress(f"removing container {container.name}")
            # Everything goes: no one is routed to them any more, so no grace period.
            with _engine(f"removing {container.name}"):
                try:
                    container.remove(force=True)
                except NotFound:
                    continue
            if pid:
                pids.append(pid)
        shutil.rmtree(self.containers.env_dir, ignore_errors=True)
        return pids + self.processes.shutdown()


# --- images (for `swiftdeploy demo-image`) ---------------------------------------


def image_present(client: docker.DockerClient, image: str) -> bool:
    with _engine(f"looking up image {image}"):
        try:
            client.images.get(image)
        except ImageNotFound:
            return False
    return True


def image_label(client: docker.DockerClient, image: str, label: str) -> str | None:
    """The image's value of `label`, "" when it has none; None when there is no image."""
    with _engine(f"reading image {image}"):
        try:
            labels = client.images.get(image).labels or {}
        except ImageNotFound:
            return None
    return str(labels.get(label, ""))


def import_rootfs(client: docker.DockerClient, tarball: Path, image: str) -> None:
    """An image of a root filesystem tarball, as `docker import`: no registry involved."""
    repository, tag = image.rsplit(":", 1)
    with _engine(f"importing {image}"):
        client.api.import_image_from_file(str(tarball), repository=repository, tag=tag)
        client.images.get(image)


def build_image(
    client: docker.DockerClient, context: Path, tags: list[str], labels: dict[str, str]
) -> None:
    """Build `context`'s Dockerfile with the engine's classic builder (its FROM is a
    local image, so nothing is pulled), tagged with every one of `tags`."""
    with _engine(f"building {tags[0]}"):
        image, _ = client.images.build(
            path=str(context), tag=tags[0], labels=labels, rm=True, forcerm=True, pull=False
        )
        for extra in tags[1:]:
            repository, tag = extra.rsplit(":", 1)
            image.tag(repository, tag)


def user_warnings(loaded: LoadedManifest, version: str) -> list[str]:
    """One line when the image of `version` runs as a uid that a host account has too
    (see `runtime.image_user`); nothing for root, or when this machine's uids are not
    the containers' (a remote engine, user-namespace remapping, rootless docker)."""
    client = connect()
    image = loaded.manifest.service.image_for(version)
    with _engine(f"reading image {image}"):
        if not client.api.base_url.startswith("http+docker://local"):
            return []
        options = " ".join(client.info().get("SecurityOptions") or [])
        if "name=userns" in options or "name=rootless" in options:
            return []
        try:
            user = str(client.images.get(image).attrs["Config"].get("User") or "")
        except ImageNotFound:
            return []  # preflight and check_version say so
        labels = {PROJECT_LABEL: project_id(loaded)}
        uid = image_uid(user, lambda: _image_passwd(client, image, labels))
    holders = host_holders(uid) if uid is not None else []
    if uid is None or not holders:
        return []
    where = loaded.where("service.image")
    return [shared_uid_warning(where, image, user, uid, holders, ENV_FILE)]


def _image_passwd(client: docker.DockerClient, image: str, labels: dict[str, str]) -> str | None:
    """The image's /etc/passwd, from a container created (never started; labelled, so
    teardown finds one an interruption left) and removed; None when it cannot be read."""
    try:
        container = client.containers.create(
            image, entrypoint=["true"], labels=labels, network_disabled=True
        )
        try:
            stream, stat = container.get_archive("/etc/passwd")
            if int((stat or {}).get("size", 0)) > PASSWD_LIMIT:
                return None
            data = b"".join(stream)
        finally:
            container.remove(force=True)
        with tarfile.open(fileobj=io.BytesIO(data)) as archive:
            member = archive.next()
            if member is None or not member.isfile():  # a link is the image's, not ours
                return None
            found = archive.extractfile(member)
            return found.read(PASSWD_LIMIT).decode(errors="replace") if found else None
    except (APIError, tarfile.TarError):
        return None


def _image_hint(example: str) -> str:
    return (
        f"build or load it on this engine first: `swiftdeploy demo-image` for the demo "
        f"service, or `docker build -t {example} .`"
    )


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:300] if text else type(exc).__name__


# --- the Backend functions ---------------------------------------------------------

NGINX_ROUTED = True
HOST_DRIVER = True


def process_manager(loaded: LoadedManifest) -> ProcessSupervisor:
    return ProcessSupervisor(loaded.state_dir)


def create_tracks(deps: BackendDeps) -> TrackRuntime:
    return DockerTracks(deps, DockerReplicas(deps.loaded, connect()))


def preflight(loaded: LoadedManifest) -> list[str]:
    client = connect()
    service = loaded.manifest.service
    image = service.image_for(service.version)
    if not image_present(client, image):
        raise BadInputError(
            f"{loaded.where('service.image')}: image {image} (service.version "
            f"{service.version}) is not on the Docker engine",
            hint=_image_hint(image),
        )
    with _engine("saying its version"):
        version = client.version().get("Version", "?")
    return [f"docker engine {version} answers", f"service.image: {image} is present"]


def doctor(loaded: LoadedManifest | None) -> list[Check]:
    try:
        client = connect()
        with _engine("saying its version"):
            info = client.version()
    except RuntimeProcessError as exc:
        return [Check("docker engine", False, exc.one_line())]
    where = client.api.base_url.replace("http+docker://localhost", "unix socket")
    return [
        Check(
            "docker engine",
            True,
            f"{info.get('Version', '?')} (API {info.get('ApiVersion', '?')}) via {where}",
        )
    ]


def state_store(loaded: LoadedManifest) -> StateStore:
    return FileStateStore(loaded.state_dir)


def shared_lock(loaded: LoadedManifest) -> AbstractContextManager[None]:
    # The state lives in the project directory, which the project lock already guards.
    return nullcontext()
