"""The kopf handlers against an emulated API server (kmock), in this process via KopfRunner.

No kubelet runs here: the tests play it themselves by patching pod statuses and writing the
signaling ConfigMap's keys as the peers would, so every step is deterministic. (The story
tests in tests/integration run real peers as local processes.)
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar, cast

import kmock
import kopf
import pytest
from kopf.testing import KopfRunner
from kube_harness import Emulator, ReboundEmulator, now_stamp
from kubernetes import client
from kubernetes.config import kube_config

NS = "emulated"
GROUP, VERSION, PLURAL = "rebound.dev", "v1alpha1", "ballsessions"
SESSIONS = f"{GROUP}/{VERSION}/{PLURAL}"
SMALL = {"width": 320, "height": 240, "radius": 12}
CHILDREN = {
    "v1/configmaps": ["signaling"],
    "v1/serviceaccounts": ["peer"],
    "rbac.authorization.k8s.io/v1/roles": ["peer"],
    "rbac.authorization.k8s.io/v1/rolebindings": ["peer"],
    "networking.k8s.io/v1/networkpolicies": ["peers"],
    "v1/pods": ["client", "server"],
}
T = TypeVar("T")


class VersionedEmulator(ReboundEmulator):
    """Every write is a new resourceVersion (so kopf can tell stale watch events from fresh
    ones) and the request log is kept whole (the tests count create requests)."""

    bump_versions = True
    request_log_limit = None


class Cluster(Emulator):
    """The shared emulated API server, plus sync helpers acting as user, kubelet and peers."""

    emulator_class = VersionedEmulator

    def __init__(self) -> None:
        super().__init__(NS)
        self.core = client.CoreV1Api(self.api)
        self.custom = client.CustomObjectsApi(self.api)

    def creations(self, resource: str, name: str) -> int:
        """How many create (POST) requests for `resource` named `name` the server has seen."""
        wanted = kmock.resource(resource)
        return sum(
            1
            for r in list(self.kmock)
            if r.action == kmock.action.CREATE
            and r.resource == wanted
            and isinstance(r.data, dict)
            and (r.data.get("metadata") or {}).get("name") == name
        )

    # ---- acting as the user, the kubelet and the peers ------------------------------------

    def create(self, name: str, **spec: Any) -> dict[str, Any]:
        """kubectl apply of a BallSession."""
        body = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "BallSession",
            "metadata": {"name": name, "namespace": NS},
            "spec": spec,
        }
        self.custom.create_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, body)
        return self.session(name)

    def session(self, name: str) -> dict[str, Any]:
        """The BallSession as stored."""
        found = self.custom.get_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, name)
        return cast(dict[str, Any], found)

    def status(self, name: str) -> dict[str, Any]:
        """The BallSession's status (empty until the operator writes one)."""
        return dict(self.session(name).get("status") or {})

    def _pod_status(self, name: str, phase: str, state: dict[str, Any]) -> None:
        container = {"name": "peer", "image": "peer", "imageID": "", "ready": False}
        status = {"phase": phase, "containerStatuses": [{**container, "state": state}]}
        self.core.patch_namespaced_pod_status(name, NS, {"status": status}, _preload_content=False)

    def pod_running(self, name: str) -> None:
        """Report a pod as a kubelet would once its container started."""
        self._pod_status(name, "Running", {"running": {"startedAt": now_stamp()}})

    def pod_ended(self, name: str, code: int) -> None:
        """Report a pod's container as terminated with exit code `code`."""
        reason = "Completed" if code == 0 else "Error"
        terminated = {"exitCode": code, "reason": reason, "finishedAt": now_stamp()}
        phase = "Succeeded" if code == 0 else "Failed"
        self._pod_status(name, phase, {"terminated": terminated})

    def signal(self, name: str, **data: str) -> None:
        """Write signaling keys as the peers do (merge patch of data)."""
        self.core.patch_namespaced_config_map(
            f"{name}-signaling", NS, {"data": data}, _preload_content=False
        )

    def events(self, name: str) -> list[dict[str, Any]]:
        """Events kopf posted about the BallSession `name`."""
        return [
            e
            for e in self.objects("v1/events")
            if (e.get("involvedObject") or {}).get("name") == name
        ]

    def children(self, name: str) -> dict[str, list[dict[str, Any]]]:
        """Objects labelled as belonging to session `name`, per resource."""
        return {
            resource: [
                o
                for o in self.objects(resource)
                if (o["metadata"].get("labels") or {}).get("rebound.dev/session") == name
            ]
            for resource in CHILDREN
        }


def wait_for(predicate: Callable[[], T | None], timeout: float = 15, what: str = "it") -> T:
    """Poll until `predicate()` is truthy; fail naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")


def phase_in(cluster: Cluster, name: str, *phases: str) -> Callable[[], dict[str, Any] | None]:
    """A predicate: the status once its phase is one of `phases`."""

    def check() -> dict[str, Any] | None:
        status = cluster.status(name)
        return status if status.get("phase") in phases else None

    return check


SUMMARY = {
    "frames_sent": 120,
    "coordinates_received": 120,
    "frames_matched": 119,
    "frames_dropped_by_client": 0,
    "mean_error_px": 0.04,
    "p95_error_px": 0.09,
    "max_error_px": 0.2,
    "achieved_fps": 29.9,
    "latency_ms_p50": 12.0,
    "latency_ms_p95": 20.0,
}


def use_kubeconfig(patch: pytest.MonkeyPatch, path: Path) -> None:
    """Point kopf's login (kubernetes' load_kube_config) at `path`. The client reads
    $KUBECONFIG once, at import, so its module-level default is patched too."""
    patch.setenv("KUBECONFIG", str(path))
    patch.setattr(kube_config, "KUBE_CONFIG_DEFAULT_LOCATION", str(path))


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    emulated = Cluster()
    try:
        yield emulated
    finally:
        emulated.close()


@pytest.fixture(scope="module")
def operator(cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[KopfRunner]:
    """The operator (all of rebound_operator.handlers) running against the emulator."""
    kubeconfig = cluster.write_kubeconfig(tmp_path_factory.mktemp("kube") / "config")
    patch = pytest.MonkeyPatch()
    use_kubeconfig(patch, kubeconfig)
    patch.setenv("REBOUND_PENDING_TIMEOUT_SECONDS", "60")
    args = ["run", "-m", "rebound_operator.handlers", "--standalone", "-n", NS]
    settings = kopf.OperatorSettings()
    settings.scanning.disabled = True  # exactly one namespace: nothing to discover
    try:
        with KopfRunner(args, timeout=30, settings=settings) as runner:
            wait_for(lambda: _watching(cluster), 20, "kopf to watch")
            yield runner
    finally:
        patch.undo()
    assert runner.exception is None, runner.output


def _watching(cluster: Cluster) -> bool:
    """kopf has started its watch streams on BallSessions, pods and configmaps."""
    seen = {
        str(r.resource)
        for r in list(cluster.kmock)
        if r.action == kmock.action.WATCH and r.resource is not None
    }
    return all(str(kmock.resource(x)) in seen for x in (SESSIONS, "v1/pods", "v1/configmaps"))


def test_a_session_gets_every_child_exactly_once_owned_and_a_status(
    cluster: Cluster, operator: KopfRunner
) -> None:
    created = cluster.create("alpha", frames=120, **SMALL)
    uid = created["metadata"]["uid"]
    status = wait_for(lambda: cluster.status("alpha").get("conditions") and cluster.status("alpha"))
    assert status["phase"] == "Pending"
    assert status["serverPod"] == "alpha-server" and status["clientPod"] == "alpha-client"
    assert status["startTime"] and status["observedGeneration"] == 1
    conditions = {c["type"]: c for c in status["conditions"]}
    assert set(conditions) == {
        "PodsReady",
        "Signaled",
        "Connected",
        "Succeeded",
        "Failed",
        "MetricsReadable",
    }
    assert conditions["Failed"]["status"] == "False"
    assert conditions["MetricsReadable"]["status"] == "Unknown"

    children = cluster.children("alpha")
    for resource, suffixes in CHILDREN.items():
        names = sorted(o["metadata"]["name"] for o in children[resource])
        assert names == [f"alpha-{s}" for s in suffixes], resource
        for obj in children[resource]:
            (ref,) = obj["metadata"]["ownerReferences"]
            assert (ref["kind"], ref["name"], ref["uid"]) == ("BallSession", "alpha", uid)
            assert ref["controller"] is True
    for resource, suffixes in CHILDREN.items():
        for suffix in suffixes:
            assert cluster.creations(resource, f"alpha-{suffix}") == 1, (resource, suffix)
    server = next(p for p in children["v1/pods"] if p["metadata"]["name"] == "alpha-server")
    args = server["spec"]["containers"][0]["args"]
    assert args[:5] == ["offer", "--signaling", "configmap", "--configmap", "alpha-signaling"]
    # No timer, no daemon: deleting a session never waits for the operator.
    assert not cluster.session("alpha")["metadata"].get("finalizers")
    wait_for(lambda: "Created" in {e.get("reason") for e in cluster.events("alpha")}, what="Event")


def test_the_session_follows_its_pods_and_configmap_to_success(
    cluster: Cluster, operator: KopfRunner
) -> None:
    cluster.create("bravo", frames=120, **SMALL)
    wait_for(lambda: cluster.status("bravo").get("phase"))
    cluster.pod_running("bravo-server")
    cluster.pod_running("bravo-client")
    wait_for(phase_in(cluster, "bravo", "Signaling"), what="Signaling")
    cluster.signal("bravo", offer="sdp-offer")
    cluster.signal("bravo", answer="sdp-answer", metrics="{broken")
    status = wait_for(
        lambda: (
            {c["type"]: c for c in cluster.status("bravo").get("conditions", [])}.get(
                "MetricsReadable", {}
            ).get("status")
            == "False"
            and cluster.status("bravo")
        ),
        what="MetricsReadable=False",
    )
    assert status["phase"] == "Signaling"  # malformed metrics are ignored, nothing crashes
    cluster.signal("bravo", metrics=json.dumps(SUMMARY))
    status = wait_for(phase_in(cluster, "bravo", "Connected"), what="Connected")
    assert status["metrics"]["final"] is False
    cluster.signal("bravo", summary=json.dumps(SUMMARY))
    cluster.pod_ended("bravo-server", 0)
    cluster.pod_ended("bravo-client", 0)
    status = wait_for(phase_in(cluster, "bravo", "Succeeded", "Failed"), what="the verdict")
    assert (status["phase"], status["reason"]) == ("Succeeded", "Completed"), status
    assert status["metrics"] == {**SUMMARY, "final": True}
    assert status["completionTime"]
    conditions = {c["type"]: c["status"] for c in status["conditions"]}
    assert conditions["Succeeded"] == "True" and conditions["Signaled"] == "True"
    wanted = {"Created", "MalformedMetrics", "Streaming", "Completed"}
    wait_for(lambda: wanted <= {e.get("reason") for e in cluster.events("bravo")}, what=str(wanted))
    # Finished pods stay for their logs.
    assert len(cluster.children("bravo")["v1/pods"]) == 2


def test_a_signaling_timeout_fires_without_any_event_and_stops_running_pods(
    cluster: Cluster, operator: KopfRunner
) -> None:
    cluster.create("charlie", signalingTimeoutSeconds=5, **SMALL)
    wait_for(lambda: cluster.status("charlie").get("phase"))
    cluster.pod_running("charlie-server")
    cluster.pod_running("charlie-client")
    cluster.signal("charlie", offer="sdp-offer")
    status = wait_for(phase_in(cluster, "charlie", "Failed"), timeout=15, what="Failed")
    assert status["reason"] == "SignalingTimeout"
    assert "answer from the client" in status["message"]
    wait_for(lambda: not cluster.children("charlie")["v1/pods"], what="running pods stopped")


def test_an_invalid_spec_fails_without_children(cluster: Cluster, operator: KopfRunner) -> None:
    cluster.create("delta", width=320, height=240, radius=200)
    status = wait_for(phase_in(cluster, "delta", "Failed"))
    assert status["reason"] == "InvalidSpec"
    assert "does not fit" in status["message"]
    assert not any(cluster.children("delta").values())


def test_a_name_taken_by_a_stranger_is_a_conflict_not_an_adoption(
    cluster: Cluster, operator: KopfRunner
) -> None:
    stranger = client.V1ConfigMap(metadata=client.V1ObjectMeta(name="echo-signaling"), data={})
    cluster.core.create_namespaced_config_map(NS, stranger)
    cluster.create("echo", **SMALL)
    status = wait_for(phase_in(cluster, "echo", "Failed"))
    assert status["reason"] == "ChildConflict"
    assert "echo-signaling" in status["message"]
    assert not cluster.children("echo")["v1/pods"]


def test_a_second_operator_adopts_instead_of_duplicating(
    cluster: Cluster, operator: KopfRunner, tmp_path: Path
) -> None:
    cluster.create("foxtrot", **SMALL)
    wait_for(lambda: cluster.status("foxtrot").get("phase"))
    before = {
        r: sorted(o["metadata"]["uid"] for o in objs)
        for r, objs in cluster.children("foxtrot").items()
    }
    posts = cluster.creations("v1/pods", "foxtrot-server")
    # A second operator (as after a restart) resumes the unfinished session: every create
    # answers 409, and the children it finds are this session's, so nothing changes.
    kubeconfig = cluster.write_kubeconfig(tmp_path / "config")
    settings = kopf.OperatorSettings()
    settings.scanning.disabled = True
    args = ["run", "-m", "rebound_operator.handlers", "--standalone", "-n", NS]
    with pytest.MonkeyPatch.context() as patch:
        use_kubeconfig(patch, kubeconfig)
        with KopfRunner(args, timeout=30, settings=settings) as second:
            wait_for(
                lambda: cluster.creations("v1/pods", "foxtrot-client") > posts,
                what="the second operator to resume foxtrot",
            )
    assert second.exception is None, second.output
    after = {
        r: sorted(o["metadata"]["uid"] for o in objs)
        for r, objs in cluster.children("foxtrot").items()
    }
    assert after == before
    assert cluster.status("foxtrot")["phase"] == "Pending"  # adopted, not a ChildConflict
    created = [e for e in cluster.events("foxtrot") if e.get("reason") == "Created"]
    assert len(created) == 1  # the second operator created nothing
