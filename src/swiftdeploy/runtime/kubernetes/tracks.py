"""`KubeTracks`: the TrackRuntime of a Kubernetes service. A track is a Deployment
whose rollout status and pods' conditions say when it is ready; the split is the
HTTPRoute's weights. The state keeps one entry per desired replica of each track
(recorded before the Deployment is applied, marked ready once it is), so an
interrupted command leaves a state `reconcile` can carry on from.
"""

from __future__ import annotations

import time
from typing import Any

from swiftdeploy.durations import format_duration
from swiftdeploy.errors import RuntimeProcessError
from swiftdeploy.runtime.base import BackendDeps, ReplicaView
from swiftdeploy.runtime.kubernetes import objects
from swiftdeploy.runtime.kubernetes.api import Kube, KubeApiError
from swiftdeploy.runtime.kubernetes.route import RouteKeeper
from swiftdeploy.state import Replica, State, Track

POLL_S = 0.2
TRACKS: tuple[Track, ...] = ("stable", "canary")
Obj = dict[str, Any]


def rollout_done(deployment: Obj) -> bool:
    """The Deployment's rollout is complete: its controller saw the latest spec, and
    every desired replica is updated, ready and available, no old one left."""
    meta, spec, status = deployment["metadata"], deployment["spec"], deployment.get("status", {})
    want = int(spec.get("replicas", 1))
    return int(status.get("observedGeneration", 0)) >= int(meta.get("generation", 0)) and all(
        int(status.get(key, 0)) == want
        for key in ("replicas", "updatedReplicas", "readyReplicas", "availableReplicas")
    )


def pod_ready(pod: Obj) -> bool:
    return not pod["metadata"].get("deletionTimestamp") and any(
        c.get("type") == "Ready" and c.get("status") == "True"
        for c in pod.get("status", {}).get("conditions", [])
    )


def why_pod_not_ready(pod: Obj) -> str:
    """The most specific reason a pod gives: a container's waiting reason, else the
    first condition that is not True."""
    status = pod.get("status", {})
    for container in status.get("containerStatuses", []):
        waiting = container.get("state", {}).get("waiting")
        if waiting:
            return f"{waiting.get('reason', 'Waiting')}: {waiting.get('message', '')}".strip(": ")
    for condition in status.get("conditions", []):
        if condition.get("status") != "True":
            reason = condition.get("reason") or f"{condition.get('type')}=False"
            message = condition.get("message")
            return f"{reason}: {message}" if message else str(reason)
    return f"phase {status.get('phase', 'unknown')}"


def why_deployment_stuck(deployment: Obj) -> str | None:
    for condition in deployment.get("status", {}).get("conditions", []):
        failed = condition.get("type") == "ReplicaFailure" and condition.get("status") == "True"
        deadline = condition.get("reason") == "ProgressDeadlineExceeded"
        if failed or deadline:
            return f"{condition.get('reason')}: {condition.get('message', '')}"
    return None


class KubeTracks:
    def __init__(self, deps: BackendDeps, kube: Kube) -> None:
        self.loaded = deps.loaded
        self.manifest = deps.loaded.manifest
        self.store = deps.store
        self.progress = deps.progress
        self.processes = deps.processes
        self.kube = kube
        self.route = RouteKeeper(
            kube, self.manifest, lambda line: deps.progress(f"warning: {line}")
        )

    def ensure_platform(self) -> None:
        """Nothing to start here: the cluster runs the tracks and its Gateway routes them."""

    def check_version(self, version: str) -> None:
        """The cluster pulls the image, from registries this machine may not reach: an
        image it cannot pull is a canary that never becomes ready, rolled back with the
        pod's reason."""

    def apply_split(self, state: State) -> None:
        """SwiftDeploy's rules of the route to the state's split; the rest of the route
        is left to whoever else edits it (route.py)."""
        self.route.apply(state.canary_weight, _routes_canary(state))

    def reconcile_split(self, state: State) -> str | None:
        """One read of the route per look; a write only when it drifted."""
        return self.route.reconcile(state.canary_weight, _routes_canary(state))

    # --- tracks ---------------------------------------------------------------

    def ensure_track(self, state: State, track: Track, version: str, replicas: int) -> State:
        name = objects.track_name(self.manifest, track)
        entries = tuple(
            Replica(
                name=f"{name}-{i}",
                track=track,
                version=version,
                port=self.manifest.service.port,
            )
            for i in range(replicas)
        )
        # Recorded before the Deployment exists, so an interrupted start is cleaned up.
        state = self._with_track(state, track, entries)
        self.progress(f"applying Deployment {name}: {version}, {replicas} replicas")
        self._apply_track(track, version, replicas)
        self._wait_ready(track, version)
        ready = tuple(r.model_copy(update={"ready": True}) for r in entries)
        return self._with_track(state, track, ready)

    def _apply_track(self, track: Track, version: str, replicas: int) -> None:
        secret = objects.env_secret(self.manifest)
        if secret is not None:
            self.kube.apply(secret)
        self.kube.apply(objects.service(self.manifest, track))
        self.kube.apply(objects.deployment(self.manifest, track, version, replicas))

    def _with_track(self, state: State, track: Track, entries: tuple[Replica, ...]) -> State:
        others = tuple(r for r in state.replicas if r.track != track)
        return self.store.save(state.model_copy(update={"replicas": (*others, *entries)}))

    def _wait_ready(self, track: Track, version: str) -> None:
        name = objects.track_name(self.manifest, track)
        timeout = self.manifest.service.start_timeout
        deadline = time.monotonic() + timeout
        deployment: Obj | None = None
        while time.monotonic() < deadline:
            deployment = self.kube.get("Deployment", name)
            if deployment is not None and rollout_done(deployment):
                pods = self._pods(track, version)
                if pods and all(pod_ready(p) for p in pods):
                    return
            time.sleep(POLL_S)
        raise RuntimeProcessError(
            f"Deployment {self.kube.namespace}/{name} at {version} was not ready within "
            f"{format_duration(timeout)}: {self._why_not_ready(track, version, deployment)}",
            hint=f"kubectl -n {self.kube.namespace} describe deployment {name}",
        )

    def _pods(self, track: Track, version: str | None = None) -> list[Obj]:
        pods = self.kube.list("Pod", objects.selector(self.manifest, track))
        if version is None:
            return pods
        return [p for p in pods if p["metadata"].get("labels", {}).get("version") == version]

    def _why_not_ready(self, track: Track, version: str, deployment: Obj | None) -> str:
        if deployment is None:
            return "the Deployment does not exist"
        for pod in self._pods(track, version):
            if not pod_ready(pod):
                return f"pod {pod['metadata']['name']}: {why_pod_not_ready(pod)}"
        stuck = why_deployment_stuck(deployment)
        if stuck:
            return stuck
        status = deployment.get("status", {})
        return (
            f"{status.get('readyReplicas', 0)} of {deployment['spec'].get('replicas', 1)}"
            " replicas ready"
        )

    def replace_stable(self, state: State, version: str) -> State:
        """The stable Deployment's image to `version`: Kubernetes's rolling update, each
        new pod ready before an old one goes. Idempotent, so resumable."""
        replicas = self.manifest.service.replicas
        name = objects.track_name(self.manifest, "stable")
        self.progress(f"updating Deployment {name} to {version}")
        self._apply_track("stable", version, replicas)
        self._wait_ready("stable", version)
        entries = tuple(
            Replica(
                name=f"{name}-{i}",
                track="stable",
                version=version,
                port=self.manifest.service.port,
                ready=True,
            )
            for i in range(replicas)
        )
        return self._with_track(state, "stable", entries)

    def retire_track(self, state: State, track: Track) -> State:
        """Out of the route first (the state's weight, which the caller set to 0), then
        the Deployment and Service go."""
        drained = tuple(r.model_copy(update={"ready": False}) for r in state.track(track))
        state = self._with_track(state, track, drained)
        self.apply_split(state)
        if drained:
            time.sleep(self.manifest.traffic.drain)
        self._delete_track(track)
        return self._with_track(state, track, ())

    def _delete_track(self, track: Track) -> None:
        name = objects.track_name(self.manifest, track)
        self.progress(f"deleting Deployment {name}")
        self.kube.delete("Deployment", name)
        self.kube.delete("Service", name)

    def reconcile(self, state: State) -> State:
        """The route is the state's; a track whose start was interrupted (its entries not
        ready) and a Deployment the state does not know are deleted."""
        self.apply_split(state)
        for track in TRACKS:
            entries = state.track(track)
            if entries and not all(r.ready for r in entries):
                self.progress(f"cleaning up the {track} track (interrupted start or stop)")
                self._delete_track(track)
                state = self._with_track(state, track, ())
        for track in TRACKS:
            # By name: listing them would take the right to read every Deployment of
            # the namespace (rbac.py).
            name = objects.track_name(self.manifest, track)
            if not state.track(track) and self.kube.get("Deployment", name) is not None:
                self.progress(f"deleting orphan Deployment {name}")
                self._delete_track(track)
        return state

    # --- what runs ------------------------------------------------------------

    def replicas(self) -> list[ReplicaView]:
        weight = self.routed_weight()
        port = self.manifest.service.port
        views = []
        for pod in self.kube.list("Pod", objects.selector(self.manifest)):
            meta, status = pod["metadata"], pod.get("status", {})
            track = meta.get("labels", {}).get("track", "?")
            ready = pod_ready(pod)
            share = None if weight is None else (weight if track == "canary" else 100 - weight)
            views.append(
                ReplicaView(
                    name=meta["name"],
                    track=track,
                    version=meta.get("labels", {}).get("version", "?"),
                    endpoint=f"{status['podIP']}:{port}" if status.get("podIP") else "-",
                    process="Terminating"
                    if meta.get("deletionTimestamp")
                    else status.get("phase", "Unknown"),
                    pid=0,
                    healthy=ready,
                    routed=ready and bool(share),
                )
            )
        return views

    def track_healthy(self, state: State, track: Track) -> bool:
        """One read of the Deployment, whatever the number of replicas: its rollout
        complete at the state's version."""
        entries = state.track(track)
        if not entries:
            return False
        deployment = self.kube.get("Deployment", objects.track_name(self.manifest, track))
        if deployment is None:
            return False
        labels = deployment["spec"]["template"]["metadata"].get("labels", {})
        return labels.get("version") == entries[0].version and rollout_done(deployment)

    def routed_weight(self) -> int | None:
        try:
            return self.route.canary_weight()
        except KubeApiError:
            return None

    def teardown(self) -> list[int]:
        self.route.teardown()
        self.kube.delete("Secret", objects.env_secret_name(self.manifest))
        for track in TRACKS:
            self._delete_track(track)
        return self.processes.shutdown()


def _routes_canary(state: State) -> bool:
    return any(r.ready for r in state.track("canary"))
