"""The demo image under a real Docker engine (for the future `runtime: docker`).

scripts/install-docker.sh makes dockerd answer, scripts/build-demo-image.sh builds the
image with no registry; then replicas run from it with ports published on 127.0.0.1 and
must behave as the demo does on the host: /healthz, /metrics, X-App-Version, guarded
chaos. Restart policies are checked against a real crash (SIGKILL from the host, which
Docker does not count as a manual stop, unlike `docker kill`).

Needs root (to install and start dockerd, and to kill a container's process) and the
docker SDK (`pip install 'docker>=7,<8'`); without the SDK the module is skipped.
Every container carries a label with this run's id and is removed at the end, as is the
image tag; the base image and the rootfs cache stay, so a re-run builds in seconds.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

import swiftdeploy
from swiftdeploy.ports import free_port

docker = pytest.importorskip("docker", minversion="7")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(os.geteuid() != 0, reason="installs and starts dockerd: needs root"),
]

ROOT = Path(__file__).resolve().parents[2]
RUN_ID = uuid.uuid4().hex[:10]
TAG = f"swiftdeploy-demo:smoke-{RUN_ID}"
TEST_LABEL = "io.swiftdeploy.test-run"
CONTAINER_PORT = 8080

StartReplica = Callable[..., tuple[Any, str]]


def _wait(predicate: Callable[[], bool], timeout: float, what: str) -> float:
    """Polls until predicate() is true; returns the seconds it took."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if predicate():
            return time.monotonic() - started
        time.sleep(0.05)
    raise AssertionError(f"{what}: not within {timeout}s")


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def _health(container: Any) -> str:
    container.reload()
    return str(container.attrs["State"].get("Health", {}).get("Status", "none"))


def _requests_by_route(metrics_text: str) -> dict[tuple[str, str], float]:
    out: dict[tuple[str, str], float] = {}
    for family in text_string_to_metric_families(metrics_text):
        for sample in family.samples:
            if sample.name == "http_requests_total":
                out[(sample.labels["route"], sample.labels["code"])] = sample.value
    return out


@pytest.fixture(scope="module")
def client() -> Iterator[Any]:
    started = time.monotonic()
    subprocess.run(["bash", str(ROOT / "scripts/install-docker.sh")], check=True, timeout=600)
    print(f"\n[docker] engine ready in {time.monotonic() - started:.2f}s")
    # version="auto": the SDK negotiates down to what the daemon speaks (1.41 for 20.10).
    engine = docker.DockerClient(base_url="unix:///var/run/docker.sock", version="auto")
    yield engine
    for container in engine.containers.list(all=True, filters={"label": f"{TEST_LABEL}={RUN_ID}"}):
        container.remove(force=True)
    engine.close()


@pytest.fixture(scope="module")
def image(client: Any) -> Iterator[Any]:
    started = time.monotonic()
    subprocess.run(
        ["bash", str(ROOT / "scripts/build-demo-image.sh"), TAG], check=True, timeout=900
    )
    print(f"\n[docker] built {TAG} in {time.monotonic() - started:.2f}s")
    yield client.images.get(TAG)
    for container in client.containers.list(all=True, filters={"label": f"{TEST_LABEL}={RUN_ID}"}):
        container.remove(force=True)
    client.images.remove(TAG)


@pytest.fixture
def start_replica(client: Any, image: Any) -> Iterator[StartReplica]:
    """Runs a replica with its port published on 127.0.0.1; removes it after the test."""
    mine: list[Any] = []

    def start(
        version: str = "v1",
        command: list[str] | None = None,
        container_port: int = CONTAINER_PORT,
        **kwargs: Any,
    ) -> tuple[Any, str]:
        host_port = free_port()
        container = client.containers.run(
            TAG,
            command=command,
            detach=True,
            environment={"SWIFTDEPLOY_DEMO_VERSION": version, **kwargs.pop("environment", {})},
            ports={f"{container_port}/tcp": ("127.0.0.1", host_port)},
            labels={TEST_LABEL: RUN_ID, "io.swiftdeploy.version": version},
            **kwargs,
        )
        mine.append(container)
        return container, f"http://127.0.0.1:{host_port}"

    yield start
    for container in mine:
        container.remove(force=True)


def test_engine_is_the_debian_daemon_reached_through_negotiation(client: Any) -> None:
    version = client.version()
    assert tuple(int(part) for part in version["ApiVersion"].split(".")) >= (1, 41)
    assert client.api.api_version == version["ApiVersion"]  # negotiated, not the SDK default
    info = client.info()
    assert info["Driver"] in {"overlay2", "vfs"}
    assert "bridge" in info["Plugins"]["Network"]
    print(f"\n[docker] server {version['Version']} API {version['ApiVersion']}, {info['Driver']}")


def test_a_port_published_without_an_address_binds_loopback(client: Any, image: Any) -> None:
    # install-docker.sh starts dockerd with --ip 127.0.0.1: `-p PORT` never means 0.0.0.0.
    container = client.containers.run(
        TAG, detach=True, ports={f"{CONTAINER_PORT}/tcp": None}, labels={TEST_LABEL: RUN_ID}
    )
    try:
        container.reload()
        bindings = container.attrs["NetworkSettings"]["Ports"][f"{CONTAINER_PORT}/tcp"]
        assert {b["HostIp"] for b in bindings} == {"127.0.0.1"}
        url = f"http://127.0.0.1:{bindings[0]['HostPort']}/healthz"
        _wait(lambda: _answers(url), 30, "/healthz on the default address")
    finally:
        container.remove(force=True)


def test_image_carries_its_metadata(image: Any) -> None:
    config = image.attrs["Config"]
    assert config["Labels"]["io.swiftdeploy.component"] == "demo"
    assert config["Labels"]["org.opencontainers.image.version"] == swiftdeploy.__version__
    assert config["Cmd"] == ["swiftdeploy-demo"]
    assert config["User"] == "65534:65534"
    assert f"{CONTAINER_PORT}/tcp" in config["ExposedPorts"]
    assert config["Healthcheck"]["Test"][0] == "CMD"
    size_mb = image.attrs["Size"] / 1e6
    print(f"\n[docker] image size {size_mb:.0f} MB")
    assert size_mb < 300


def test_two_replicas_serve_health_and_metrics_on_loopback(
    client: Any, start_replica: StartReplica
) -> None:
    started = time.monotonic()
    replicas = [start_replica(version) for version in ("v1", "v2")]
    for (container, url), version in zip(replicas, ("v1", "v2"), strict=True):
        http_ready = _wait(lambda url=url: _answers(f"{url}/healthz"), 30, f"{version} /healthz")
        bindings = client.api.inspect_container(container.id)["NetworkSettings"]["Ports"]
        assert [b["HostIp"] for b in bindings[f"{CONTAINER_PORT}/tcp"]] == ["127.0.0.1"]
        assert httpx.get(f"{url}/healthz").json() == {"status": "ok", "version": version}
        for _ in range(3):
            response = httpx.get(f"{url}/")
            assert response.json() == {"service": "swiftdeploy-demo", "version": version}
            assert response.headers["x-app-version"] == version
        assert httpx.get(f"{url}/no/such/path").status_code == 404
        metrics = httpx.get(f"{url}/metrics")
        assert metrics.headers["content-type"].startswith("text/plain")
        assert f'app_info{{version="{version}"}} 1.0' in metrics.text
        # Counted by route template; /healthz and /metrics are not counted.
        assert _requests_by_route(metrics.text) == {("/", "200"): 3.0, ("<unmatched>", "404"): 1.0}
        assert container.labels["io.swiftdeploy.version"] == version
        print(f"\n[docker] {version}: /healthz answered {http_ready:.2f}s after its turn")
    for container, _ in replicas:
        _wait(lambda c=container: _health(c) == "healthy", 30, "docker health")
    print(f"\n[docker] 2 replicas started to docker-healthy in {time.monotonic() - started:.2f}s")
    assert {c.id for c in client.containers.list(filters={"label": "io.swiftdeploy.version"})} >= {
        c.id for c, _ in replicas
    }


def test_start_to_healthy_of_one_replica(start_replica: StartReplica) -> None:
    started = time.monotonic()
    container, url = start_replica("v1")
    _wait(lambda: _answers(f"{url}/healthz"), 30, "/healthz")
    http_ready = time.monotonic() - started
    _wait(lambda: _health(container) == "healthy", 30, "docker health")
    print(
        f"\n[docker] one replica: run -> /healthz 200 in {http_ready:.2f}s, "
        f"-> docker 'healthy' in {time.monotonic() - started:.2f}s"
    )


def test_chaos_is_guarded_and_behaves_as_on_the_host(start_replica: StartReplica) -> None:
    _plain, plain_url = start_replica("v1")
    _guarded, url = start_replica("v2", environment={"SWIFTDEPLOY_CHAOS_TOKEN": "s3cret"})
    for u in (plain_url, url):
        _wait(lambda u=u: _answers(f"{u}/healthz"), 30, "/healthz")
    assert httpx.post(f"{plain_url}/chaos", json={}).status_code == 404
    assert httpx.post(f"{url}/chaos", json={"error_rate": 1}).status_code == 401
    auth = {"authorization": "Bearer s3cret"}
    assert httpx.post(f"{url}/chaos", json={"error_rate": 2}, headers=auth).status_code == 400
    response = httpx.post(f"{url}/chaos", json={"error_rate": 1.0}, headers=auth)
    assert response.json() == {"chaos": {"error_rate": 1.0, "latency_ms": 0.0}}
    failing = httpx.get(f"{url}/")
    assert failing.status_code == 500
    assert failing.json() == {"error": "chaos", "version": "v2"}
    assert httpx.get(f"{url}/healthz").status_code == 200  # health is not affected
    assert httpx.delete(f"{url}/chaos", headers=auth).json() == {"chaos": "recovered"}
    assert httpx.get(f"{url}/").status_code == 200
    counts = _requests_by_route(httpx.get(f"{url}/metrics").text)
    assert counts[("/", "500")] == 1.0
    assert counts[("/", "200")] == 1.0


def test_manifest_argv_overrides_the_env_defaults(start_replica: StartReplica) -> None:
    # The argv of the manifest's `command`, as the docker backend would pass it.
    command = ["swiftdeploy-demo", "--port", "9000", "--version", "v9"]
    container, url = start_replica("v1", command=command, container_port=9000)
    _wait(lambda: _answers(f"{url}/healthz"), 30, "/healthz on --port 9000")
    assert httpx.get(f"{url}/").json()["version"] == "v9"
    # The HEALTHCHECK follows --port, not the image's default 8080.
    _wait(lambda: _health(container) == "healthy", 30, "docker health on --port 9000")


def _crash(container: Any) -> int:
    """SIGKILL to the replica's process from the host: a crash, not a manual stop."""
    container.reload()
    pid = int(container.attrs["State"]["Pid"])
    os.kill(pid, signal.SIGKILL)
    return pid


@pytest.mark.parametrize("policy", ["on-failure", "unless-stopped"])
def test_restart_policy_restarts_a_crashed_replica(
    start_replica: StartReplica, policy: str
) -> None:
    restart = {"Name": policy, **({"MaximumRetryCount": 3} if policy == "on-failure" else {})}
    container, url = start_replica("v1", restart_policy=restart)
    _wait(lambda: _answers(f"{url}/healthz"), 30, "/healthz")
    other, other_url = start_replica("v1", restart_policy=restart)
    _wait(lambda: _answers(f"{other_url}/healthz"), 30, "/healthz of the other replica")

    old_pid = _crash(container)
    crashed = time.monotonic()

    def restarted() -> bool:
        container.reload()
        state = container.attrs["State"]
        return bool(
            container.attrs["RestartCount"] >= 1
            and state["Running"]
            and state["Pid"] not in (0, old_pid)
        )

    _wait(restarted, 30, f"{policy}: restart after a crash")
    _wait(lambda: _answers(f"{url}/healthz"), 30, "/healthz after the restart")
    print(f"\n[docker] {policy}: crashed replica back in {time.monotonic() - crashed:.2f}s")
    other.reload()
    assert other.attrs["RestartCount"] == 0  # the other replica was not touched
    assert _answers(f"{other_url}/healthz")


def test_a_manual_stop_or_docker_kill_is_not_restarted(
    start_replica: StartReplica,
) -> None:
    stopped, stopped_url = start_replica("v1", restart_policy={"Name": "unless-stopped"})
    killed, killed_url = start_replica(
        "v1", restart_policy={"Name": "on-failure", "MaximumRetryCount": 3}
    )
    for u in (stopped_url, killed_url):
        _wait(lambda u=u: _answers(f"{u}/healthz"), 30, "/healthz")
    stopped.stop(timeout=10)  # SIGTERM: uvicorn shuts down gracefully, exit 0
    killed.kill()  # `docker kill` counts as a manual stop for every policy
    time.sleep(2)
    for container, code in ((stopped, 0), (killed, 137)):
        container.reload()
        assert container.attrs["State"]["Status"] == "exited"
        assert container.attrs["State"]["ExitCode"] == code
        assert container.attrs["RestartCount"] == 0
