"""The kopf handlers against an emulated API server (kmock), in this process via KopfRunner.

No kubelet runs here: the tests play it themselves by patching pod statuses and writing the
signaling ConfigMap's keys as the peers would, so every step is deterministic. (The story
tests in tests/integration run real peers as local processes.)
"""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar, cast

import kmock
import kopf
import pytest
from kopf.testing import KopfRunner
from kube_harness import Emulator, ReboundEmulator, Seen, now_stamp, object_path
from kubernetes import client
from kubernetes.config import kube_config

NS = "emulated"
GROUP, VERSION, PLURAL = "rebound.dev", "v1alpha1", "ballsessions"
SESSIONS = f"{GROUP}/{VERSION}/{PLURAL}"
SMALL = {"width": 320, "height": 240, "radius": 12}
CHILDREN = {
    "v1/configmaps": ["client-signaling", "server-signaling"],
    "v1/serviceaccounts": ["client", "server"],
    "rbac.authorization.k8s.io/v1/roles": ["client", "server"],
    "rbac.authorization.k8s.io/v1/rolebindings": ["client", "server"],
    "networking.k8s.io/v1/networkpolicies": ["peers"],
    "v1/pods": ["client", "server"],
}
T = TypeVar("T")


class VersionedEmulator(ReboundEmulator):
    """Every write is a new resourceVersion (so kopf can tell stale watch events from fresh
    ones)."""

    bump_versions = True


class Cluster(Emulator):
    """The shared emulated API server, plus sync helpers acting as user, kubelet and peers."""

    emulator_class = VersionedEmulator

    def __init__(self) -> None:
        super().__init__(NS)
        self.core = client.CoreV1Api(self.api)
        self.custom = client.CustomObjectsApi(self.api)
        self._seed_api_server()

    def _seed_api_server(self) -> None:
        """The `kubernetes` Service and EndpointSlice a real API server keeps in `default`."""
        self.core.create_namespaced_service(
            "default",
            {
                "metadata": {"name": "kubernetes", "namespace": "default"},
                "spec": {"clusterIP": "10.96.0.1", "ports": [{"port": 443}]},
            },
        )
        client.DiscoveryV1Api(self.api).create_namespaced_endpoint_slice(
            "default",
            {
                "metadata": {"name": "kubernetes", "namespace": "default"},
                "addressType": "IPv4",
                "endpoints": [{"addresses": ["172.18.0.2"]}],
                "ports": [{"name": "https", "port": 6443, "protocol": "TCP"}],
            },
        )

    def requests(self, action: Any, resource: str, name: str | None = None) -> list[Seen]:
        """Requests the server has seen with this action on this resource (and name)."""
        wanted = kmock.resource(resource)
        history: list[Seen] = self.kmock.history
        return [
            r
            for r in list(history)
            if r.action == action and r.resource == wanted and (name is None or r.name == name)
        ]

    def creations(self, resource: str, name: str) -> int:
        """How many create (POST) requests for `resource` named `name` the server has seen."""
        return len(self.requests(kmock.action.CREATE, resource, name))

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

    def pod_unschedulable(self, name: str, message: str) -> None:
        """Report a pod as the scheduler does when no node has room for it."""
        condition = {
            "type": "PodScheduled",
            "status": "False",
            "reason": "Unschedulable",
            "message": message,
            "lastTransitionTime": now_stamp(),
        }
        status = {"phase": "Pending", "conditions": [condition]}
        self.core.patch_namespaced_pod_status(name, NS, {"status": status}, _preload_content=False)

    def pod_ended(self, name: str, code: int) -> None:
        """Report a pod's container as terminated with exit code `code`."""
        reason = "Completed" if code == 0 else "Error"
        terminated = {"exitCode": code, "reason": reason, "finishedAt": now_stamp()}
        phase = "Succeeded" if code == 0 else "Failed"
        self._pod_status(name, phase, {"terminated": terminated})

    def signal(self, name: str, role: str = "server", **data: str) -> None:
        """Write signaling keys as a peer does: a merge patch of its own ConfigMap's data."""
        self.core.patch_namespaced_config_map(
            f"{name}-{role}-signaling", NS, {"data": data}, _preload_content=False
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
        for r in list(cluster.kmock.history)
        if r.action == kmock.action.WATCH and r.resource is not None
    }
    return all(str(kmock.resource(x)) in seen for x in (SESSIONS, "v1/pods", "v1/configmaps"))


def brought_up(cluster: Cluster, name: str) -> None:
    """Wait until the session's children exist (both pods are created last)."""
    wait_for(lambda: len(cluster.children(name)["v1/pods"]) == 2, what=f"{name}'s pods")


def test_a_session_gets_every_child_exactly_once_owned_and_a_status(
    cluster: Cluster, operator: KopfRunner
) -> None:
    created = cluster.create("alpha", frames=120, **SMALL)
    uid = created["metadata"]["uid"]
    brought_up(cluster, "alpha")
    status = cluster.status("alpha")
    assert status["phase"] == "Pending"
    assert status["serverPod"] == "alpha-server" and status["clientPod"] == "alpha-client"
    assert status["startTime"] and status["observedGeneration"] == 1
    conditions = {c["type"]: c for c in status["conditions"]}
    assert set(conditions) == {
        "Ready",
        "Reconciling",
        "Stalled",
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
    assert args[:7] == [
        "offer",
        "--signaling",
        "configmap",
        "--configmap",
        "alpha-server-signaling",
        "--peer-configmap",
        "alpha-client-signaling",
    ]
    # No timer, no daemon: deleting a session never waits for the operator.
    assert not cluster.session("alpha")["metadata"].get("finalizers")
    wait_for(lambda: "Created" in {e.get("reason") for e in cluster.events("alpha")}, what="Event")


def test_the_first_status_comes_before_the_children(cluster: Cluster, operator: KopfRunner) -> None:
    cluster.create("yankee", frames=120, **SMALL)
    brought_up(cluster, "yankee")
    history = list(cluster.kmock.history)
    session = kmock.resource(SESSIONS)

    def first(action: Any, resource: Any, subresource: str | None = None) -> int:
        return next(
            i
            for i, r in enumerate(history)
            if r.action == action
            and r.resource == resource
            and (r.name or "").startswith("yankee")
            and r.subresource == subresource
        )

    status_at = first(kmock.action.UPDATE, session, "status")
    assert status_at < first(kmock.action.CREATE, kmock.resource("v1/configmaps"))


def test_the_session_follows_its_pods_and_configmap_to_success(
    cluster: Cluster, operator: KopfRunner
) -> None:
    cluster.create("bravo", frames=120, **SMALL)
    brought_up(cluster, "bravo")
    cluster.pod_running("bravo-server")
    cluster.pod_running("bravo-client")
    wait_for(phase_in(cluster, "bravo", "Signaling"), what="Signaling")
    cluster.signal("bravo", offer="sdp-offer")
    cluster.signal("bravo", "client", answer="sdp-answer")
    cluster.signal("bravo", metrics="{broken")
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
    brought_up(cluster, "charlie")
    cluster.pod_running("charlie-server")
    cluster.pod_running("charlie-client")
    cluster.signal("charlie", offer="sdp-offer")
    status = wait_for(phase_in(cluster, "charlie", "Failed"), timeout=15, what="Failed")
    assert status["reason"] == "SignalingTimeout"
    assert "answer from the client" in status["message"]
    wait_for(lambda: not cluster.children("charlie")["v1/pods"], what="running pods stopped")


NO_ROOM = "0/1 nodes are available: 1 Insufficient cpu."


def test_a_session_without_room_waits_naming_the_scheduler_then_fails_unschedulable(
    cluster: Cluster, operator: KopfRunner
) -> None:
    """Queued on a full cluster: never SignalingTimeout (its clock has not started), Pending
    with the scheduler's words, Failed/Unschedulable at the spec's pending timeout."""
    cluster.create("queued", signalingTimeoutSeconds=5, pendingTimeoutSeconds=12, **SMALL)
    brought_up(cluster, "queued")
    cluster.pod_running("queued-server")
    cluster.pod_unschedulable("queued-client", NO_ROOM)
    status = wait_for(
        lambda: (
            cluster.status("queued").get("reason") == "Unschedulable" and cluster.status("queued")
        ),
        what="Pending/Unschedulable",
    )
    assert status["phase"] == "Pending"
    assert NO_ROOM in status["message"] and "queued-client" in status["message"]
    # Past the signaling timeout, still waiting for room.
    time.sleep(7)
    assert cluster.status("queued")["phase"] == "Pending"
    events = wait_for(
        lambda: [e for e in cluster.events("queued") if e.get("reason") == "Unschedulable"],
        what="an Unschedulable event",
    )
    assert events[0]["type"] == "Warning" and NO_ROOM in events[0]["message"]
    status = wait_for(phase_in(cluster, "queued", "Failed"), timeout=15, what="Failed")
    assert status["reason"] == "Unschedulable", status
    assert (
        status["message"]
        == f"client pod queued-client could not be scheduled within 12 s: {NO_ROOM}"
    )
    # Neither the waiting server nor the pod nobody could place lingers (or starts later).
    wait_for(lambda: not cluster.children("queued")["v1/pods"], what="both pods stopped")


def test_the_signaling_clock_starts_when_both_peers_run(
    cluster: Cluster, operator: KopfRunner
) -> None:
    cluster.create("lonely", signalingTimeoutSeconds=5, **SMALL)
    brought_up(cluster, "lonely")
    cluster.pod_running("lonely-server")
    time.sleep(6)  # longer than the signaling timeout, with only one peer running
    assert cluster.status("lonely")["phase"] == "Pending"
    cluster.pod_running("lonely-client")
    wait_for(phase_in(cluster, "lonely", "Signaling"), what="Signaling")
    status = wait_for(phase_in(cluster, "lonely", "Failed"), timeout=15, what="Failed")
    assert status["reason"] == "SignalingTimeout"


def test_an_invalid_spec_fails_without_children(cluster: Cluster, operator: KopfRunner) -> None:
    cluster.create("delta", width=320, height=240, radius=200)
    status = wait_for(phase_in(cluster, "delta", "Failed"))
    assert status["reason"] == "InvalidSpec"
    assert "does not fit" in status["message"]
    assert not any(cluster.children("delta").values())


def test_a_name_taken_by_a_stranger_is_a_conflict_not_an_adoption(
    cluster: Cluster, operator: KopfRunner
) -> None:
    stranger = client.V1ConfigMap(
        metadata=client.V1ObjectMeta(name="echo-server-signaling"), data={}
    )
    cluster.core.create_namespaced_config_map(NS, stranger)
    cluster.create("echo", **SMALL)
    status = wait_for(phase_in(cluster, "echo", "Failed"))
    assert status["reason"] == "ChildConflict"
    assert "echo-server-signaling" in status["message"]
    assert not cluster.children("echo")["v1/pods"]


def test_a_second_operator_adopts_instead_of_duplicating(
    cluster: Cluster, operator: KopfRunner, tmp_path: Path
) -> None:
    cluster.create("foxtrot", **SMALL)
    brought_up(cluster, "foxtrot")
    before = {
        r: sorted(o["metadata"]["uid"] for o in objs)
        for r, objs in cluster.children("foxtrot").items()
    }
    posts = cluster.creations("v1/pods", "foxtrot-server")
    reads = len(cluster.requests(kmock.action.FETCH, "v1/pods", "foxtrot-client"))
    patches = len(cluster.requests(kmock.action.UPDATE, "rebound.dev/v1alpha1/ballsessions"))

    def settled() -> bool:
        """The second operator is done with foxtrot: it patched a status (as a wrong
        ChildConflict would), or it tried to create the client pod and then read it twice
        (the 409's holder, then the observation)."""
        if (
            len(cluster.requests(kmock.action.UPDATE, "rebound.dev/v1alpha1/ballsessions"))
            > patches
        ):
            return True
        read = len(cluster.requests(kmock.action.FETCH, "v1/pods", "foxtrot-client"))
        return cluster.creations("v1/pods", "foxtrot-client") > posts and read >= reads + 2

    # A second operator (as after a restart) resumes the unfinished session: every create
    # answers 409, and the children it finds are this session's, so nothing changes.
    kubeconfig = cluster.write_kubeconfig(tmp_path / "config")
    settings = kopf.OperatorSettings()
    settings.scanning.disabled = True
    args = ["run", "-m", "rebound_operator.handlers", "--standalone", "-n", NS]
    with pytest.MonkeyPatch.context() as patch:
        use_kubeconfig(patch, kubeconfig)
        with KopfRunner(args, timeout=30, settings=settings) as second:
            wait_for(settled, what="the second operator to resume foxtrot")
    assert second.exception is None, second.output
    after = {
        r: sorted(o["metadata"]["uid"] for o in objs)
        for r, objs in cluster.children("foxtrot").items()
    }
    assert after == before
    assert cluster.status("foxtrot")["phase"] == "Pending"  # adopted, not a ChildConflict
    created = [e for e in cluster.events("foxtrot") if e.get("reason") == "Created"]
    assert len(created) == 1  # the second operator created nothing


# ---- hardening (issue 8) -------------------------------------------------------------------


def _stranger_pod(cluster: Cluster, name: str, labels: dict[str, str] | None = None) -> str:
    """An unowned running pod, as anyone with pod rights in the namespace could create."""
    pod = {
        "metadata": {"name": name, "namespace": NS, "labels": labels or {}},
        "spec": {"containers": [{"name": "web", "image": "nginx"}]},
    }
    created = cluster.core.create_namespaced_pod(NS, pod)
    cluster.pod_running(name)
    return str(created.metadata.uid)


def _pods(cluster: Cluster) -> dict[str, dict[str, Any]]:
    return {p["metadata"]["name"]: p for p in cluster.objects("v1/pods")}


def test_the_operator_never_deletes_a_pod_it_does_not_own(
    cluster: Cluster, operator: KopfRunner
) -> None:
    # Labelled like a child, so the operator's watch sees it and wakes the session up.
    labels = {"rebound.dev/session": "hotel", "app.kubernetes.io/managed-by": "rebound-operator"}
    uid = _stranger_pod(cluster, "hotel-server", labels)
    cluster.create("hotel", **SMALL)
    status = wait_for(phase_in(cluster, "hotel", "Failed"), what="Failed")
    assert status["reason"] == "ChildConflict"
    assert "Pod emulated/hotel-server" in status["message"]
    assert "not owned by any controller" in status["message"]
    # Events on the stranger's pod make the operator look at the finished session again.
    reads = len(cluster.requests(kmock.action.FETCH, "v1/pods", "hotel-server"))
    for _ in range(3):
        cluster.pod_running("hotel-server")
    wait_for(
        lambda: len(cluster.requests(kmock.action.FETCH, "v1/pods", "hotel-server")) > reads,
        what="the operator to look at the finished session again",
    )
    assert _pods(cluster)["hotel-server"]["metadata"]["uid"] == uid
    assert not cluster.requests(kmock.action.DELETE, "v1/pods", "hotel-server")


def test_a_replaced_pod_is_not_judged_or_deleted(cluster: Cluster, operator: KopfRunner) -> None:
    cluster.create("india", **SMALL)
    brought_up(cluster, "india")
    cluster.pod_running("india-server")
    cluster.pod_running("india-client")
    wait_for(phase_in(cluster, "india", "Signaling"))
    # Someone replaces the client pod with their own (same name, no owner reference).
    cluster.core.delete_namespaced_pod("india-client", NS, _preload_content=False)
    uid = _stranger_pod(cluster, "india-client", {"rebound.dev/session": "india"})
    status = wait_for(phase_in(cluster, "india", "Failed"), what="Failed")
    assert status["reason"] == "PodDeleted" and "client pod" in status["message"]
    wait_for(lambda: "india-server" not in _pods(cluster), what="our server pod stopped")
    assert _pods(cluster)["india-client"]["metadata"]["uid"] == uid  # theirs: untouched


def test_an_unexpected_error_ends_the_session_clearly_once(
    cluster: Cluster, operator: KopfRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    from rebound_operator import handlers

    calls: list[str] = []
    real = handlers.evaluate

    def evaluate(spec: Any, obs: Any, previous: Any, generation: Any = None) -> Any:
        # Only on a real pod (the first status is judged on pods not created yet).
        if obs.server is not None and obs.server.name == "juliet-server" and obs.server.uid:
            calls.append("juliet")
            raise RecursionError("maximum recursion depth exceeded")
        return real(spec, obs, previous, generation)

    monkeypatch.setattr(handlers, "evaluate", evaluate)
    cluster.create("juliet", **SMALL)
    status = wait_for(phase_in(cluster, "juliet", "Failed"), what="Failed")
    assert status["reason"] == "InternalError"
    assert "RecursionError: maximum recursion depth exceeded" in status["message"]
    conditions = {c["type"]: c["status"] for c in status["conditions"]}
    assert conditions["Stalled"] == "True" and conditions["Failed"] == "True"
    wait_for(lambda: not {"juliet-server", "juliet-client"} & set(_pods(cluster)), what="stop")
    # terminal: a later event makes the operator look again, but never evaluate (or fail) again
    reads = len(cluster.requests(kmock.action.FETCH, "v1/pods", "juliet-server"))
    cluster.signal("juliet", offer="o")
    wait_for(
        lambda: len(cluster.requests(kmock.action.FETCH, "v1/pods", "juliet-server")) > reads,
        what="the operator to look again",
    )
    assert calls == ["juliet"]
    reasons = [e.get("reason") for e in cluster.events("juliet")]
    assert reasons.count("InternalError") == 1


def test_a_recursion_bomb_in_the_summary_cannot_wedge_the_deadline(
    cluster: Cluster, operator: KopfRunner
) -> None:
    cluster.create("kilo", activeDeadlineSeconds=10, **SMALL)
    brought_up(cluster, "kilo")
    cluster.pod_running("kilo-server")
    cluster.pod_running("kilo-client")
    cluster.signal("kilo", "client", answer="a")
    cluster.signal("kilo", offer="o", metrics=json.dumps(SUMMARY), summary="[" * 100_000)
    wait_for(
        lambda: "MalformedMetrics" in {e.get("reason") for e in cluster.events("kilo")},
        what="the malformed summary to be noticed",
    )
    status = wait_for(phase_in(cluster, "kilo", "Failed"), timeout=30, what="the deadline")
    assert status["reason"] == "DeadlineExceeded"
    readable = {c["type"]: c for c in status["conditions"]}["MetricsReadable"]
    assert readable["status"] == "False" and "too large" in readable["message"]
    wait_for(lambda: not {"kilo-server", "kilo-client"} & set(_pods(cluster)), what="pods stop")


def test_a_huge_peer_error_still_fails_the_session_and_stops_the_pods(
    cluster: Cluster, operator: KopfRunner
) -> None:
    cluster.create("lima", **SMALL)
    brought_up(cluster, "lima")
    cluster.pod_running("lima-server")
    cluster.pod_running("lima-client")
    cluster.signal("lima", offer="o", summary=json.dumps({**SUMMARY, "x": "y" * 450_000}))
    cluster.signal("lima", "client", answer="a", error="client: " + "z" * 600_000)
    cluster.pod_ended("lima-client", 1)
    status = wait_for(phase_in(cluster, "lima", "Failed"), what="Failed")
    assert status["reason"] == "PodFailed"
    assert "lima-client" in status["message"] and len(status["message"]) <= 1024
    assert len(json.dumps(status)) < 20_000
    wait_for(lambda: "lima-server" not in _pods(cluster), what="the server stopped")


def test_a_session_is_judged_by_the_spec_it_started_with(
    cluster: Cluster, operator: KopfRunner
) -> None:
    cluster.create("mike", maxMeanErrorPx=1.0, frames=120, **SMALL)
    brought_up(cluster, "mike")
    status = cluster.status("mike")
    assert status["sessionSpec"]["maxMeanErrorPx"] == 1.0
    # An edit that slipped past admission (no CEL): the session keeps its spec, and says so.
    cluster.custom.patch_namespaced_custom_object(
        GROUP, VERSION, NS, PLURAL, "mike", {"spec": {"maxMeanErrorPx": 0.000001}}
    )
    wait_for(lambda: "SpecChanged" in {e.get("reason") for e in cluster.events("mike")})
    wait_for(lambda: cluster.status("mike").get("observedGeneration") == 2, what="generation 2")
    cluster.pod_running("mike-server")
    cluster.pod_running("mike-client")
    cluster.signal("mike", offer="o", summary=json.dumps(SUMMARY))
    cluster.signal("mike", "client", answer="a")
    cluster.pod_ended("mike-server", 0)
    cluster.pod_ended("mike-client", 0)
    status = wait_for(phase_in(cluster, "mike", "Succeeded", "Failed"), what="the verdict")
    assert (status["phase"], status["reason"]) == ("Succeeded", "Completed")
    assert status["sessionSpec"]["maxMeanErrorPx"] == 1.0
    conditions = {c["type"]: c for c in status["conditions"]}
    assert conditions["Ready"]["status"] == "True"
    assert all(c["observedGeneration"] == 2 for c in conditions.values())


def test_the_client_cannot_publish_the_servers_results(
    cluster: Cluster, operator: KopfRunner
) -> None:
    cluster.create("november", **SMALL)
    brought_up(cluster, "november")
    cluster.pod_running("november-server")
    cluster.pod_running("november-client")
    cluster.signal("november", offer="o")
    cluster.signal("november", "client", answer="a", summary=json.dumps(SUMMARY))
    cluster.pod_ended("november-server", 0)
    cluster.pod_ended("november-client", 0)
    status = wait_for(phase_in(cluster, "november", "Failed", "Succeeded"), what="the verdict")
    assert (status["phase"], status["reason"]) == ("Failed", "MetricsMissing")


def test_a_re_created_session_waits_for_the_old_children_to_go(
    cluster: Cluster, operator: KopfRunner
) -> None:
    cluster.create("oscar", **SMALL)
    wait_for(lambda: all(cluster.children("oscar").values()), what="children")
    old = cluster.session("oscar")["metadata"]["uid"]
    # Deleted; no garbage collector runs here, so every child stays behind for now.
    cluster.custom.delete_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, "oscar")
    new = cluster.create("oscar", **SMALL)["metadata"]["uid"]
    status = wait_for(
        lambda: (
            cluster.status("oscar").get("reason") == "WaitingForCleanup" and cluster.status("oscar")
        ),
        what="WaitingForCleanup",
    )
    assert status["phase"] == "Pending" and "oscar-server" in status["message"]
    time.sleep(1)  # give a wrong operator the chance to create or delete something
    children = cluster.children("oscar")
    assert all(
        o["metadata"]["ownerReferences"][0]["uid"] == old for v in children.values() for o in v
    )
    # The garbage collector catches up (objects with a deleted owner go away).
    for resource, objects in children.items():
        for obj in objects:
            url = cluster.url + object_path(kmock.resource(resource), obj["metadata"])
            urllib.request.urlopen(urllib.request.Request(url, method="DELETE"), timeout=5)
    wait_for(
        lambda: all(
            len(v) == len(CHILDREN[r])
            and all(o["metadata"]["ownerReferences"][0]["uid"] == new for o in v)
            for r, v in cluster.children("oscar").items()
        ),
        what="the new session's children",
    )
    # The status is written after the children, so it may trail them by a moment.
    status = wait_for(
        lambda: (
            cluster.status("oscar").get("reason") != "WaitingForCleanup" and cluster.status("oscar")
        ),
        what="the status to move on from WaitingForCleanup",
    )
    assert (status["phase"], status["reason"]) == ("Pending", "PodsPending")


def test_a_terminating_pod_is_waited_for_not_a_conflict(
    cluster: Cluster, operator: KopfRunner
) -> None:
    # A pod in its grace period keeps its name: kmock keeps one with a finalizer, like that.
    pod = {
        "metadata": {"name": "papa-server", "namespace": NS, "finalizers": ["test/hold"]},
        "spec": {"containers": [{"name": "x", "image": "x"}]},
    }
    cluster.core.create_namespaced_pod(NS, pod)
    cluster.core.delete_namespaced_pod("papa-server", NS, _preload_content=False)
    cluster.create("papa", **SMALL)
    wait_for(lambda: cluster.status("papa").get("reason") == "WaitingForCleanup", what="waiting")
    assert not any(cluster.children("papa").values())  # nothing created while it is there
    cluster.core.patch_namespaced_pod(
        "papa-server", NS, {"metadata": {"finalizers": None}}, _preload_content=False
    )
    wait_for(lambda: len(cluster.children("papa")["v1/pods"]) == 2, what="the new pods")


def test_an_image_outside_the_allowed_patterns_runs_nothing(
    cluster: Cluster, operator: KopfRunner
) -> None:
    cluster.create("quebec", image="evil.example/miner:latest", **SMALL)
    status = wait_for(phase_in(cluster, "quebec", "Failed"))
    assert status["reason"] == "ImageNotAllowed"
    assert "evil.example/miner:latest" in status["message"]
    assert not any(cluster.children("quebec").values())
    assert not cluster.requests(kmock.action.CREATE, "v1/pods", "quebec-server")


def test_turn_credentials_stay_in_their_secret(cluster: Cluster, operator: KopfRunner) -> None:
    ref = {"name": "turn-credentials", "key": "password"}
    turn = {"urls": ["turn:turn.example:3478"], "username": "rebound", "credentialSecretRef": ref}
    cluster.create("romeo", iceServers=[turn], **SMALL)
    wait_for(lambda: len(cluster.children("romeo")["v1/pods"]) == 2, what="pods")
    for pod in cluster.children("romeo")["v1/pods"]:
        (container,) = pod["spec"]["containers"]
        assert "credentialSecretRef" not in json.dumps(container["args"])
        assert {
            "name": "REBOUND_ICE_CREDENTIAL_0",
            "valueFrom": {"secretKeyRef": ref},
        } in container["env"]
    brought_up(cluster, "romeo")
    # The operator writes only the status (kopf keeps no copy of the spec in annotations).
    session = cluster.session("romeo")
    assert not (session["metadata"].get("annotations") or {})
    assert '"credential"' not in json.dumps(session["status"]).replace('\\"', '"')


def test_the_api_server_egress_names_its_addresses(cluster: Cluster, operator: KopfRunner) -> None:
    cluster.create("sierra", **SMALL)
    wait_for(lambda: cluster.children("sierra")["networking.k8s.io/v1/networkpolicies"])
    (policy,) = cluster.children("sierra")["networking.k8s.io/v1/networkpolicies"]
    egress = policy["spec"]["egress"]
    assert all(rule.get("to") for rule in egress)
    blocks = {b["ipBlock"]["cidr"] for rule in egress for b in rule["to"] if "ipBlock" in b}
    assert blocks == {"10.96.0.1/32", "172.18.0.2/32"}


def test_pods_and_configmaps_are_watched_only_through_the_childrens_selector(
    cluster: Cluster, operator: KopfRunner
) -> None:
    from rebound_operator.children import CHILD_SELECTOR

    seen = 0
    for resource in ("v1/pods", "v1/configmaps"):
        for action in (kmock.action.LIST, kmock.action.WATCH):
            for request in cluster.requests(action, resource):
                seen += 1
                assert request.params.get("labelSelector") == CHILD_SELECTOR, request
    assert seen >= 2  # kopf listed and watched both


# ---- the session report (issue 12) ---------------------------------------------------------


def _stored_series(frames: int) -> str:
    from peers import series
    from peers.config import SessionSpec
    from peers.series_store import DecimatedSeries

    store = DecimatedSeries()
    store.write(series.session_line(SessionSpec(frames=frames)) + "\n")
    for i in range(frames):
        record = series.FrameRecord(i, i / 30, 50.0, 60.0, 50.01, 60.0, 0.01, 37.0, "matched")
        store.write(series.frame_line(record) + "\n")
    store.write(series.summary_line(SUMMARY) + "\n")
    text = store.configmap_text()
    assert text is not None
    return text


def _finish(cluster: Cluster, name: str, **server_data: str) -> dict[str, Any]:
    cluster.create(name, frames=120, **SMALL)
    brought_up(cluster, name)
    cluster.pod_running(f"{name}-server")
    cluster.pod_running(f"{name}-client")
    cluster.signal(name, offer="sdp-offer")
    cluster.signal(name, "client", answer="sdp-answer")
    cluster.signal(name, summary=json.dumps(SUMMARY), metrics=json.dumps(SUMMARY), **server_data)
    cluster.pod_ended(f"{name}-server", 0)
    cluster.pod_ended(f"{name}-client", 0)
    return wait_for(phase_in(cluster, name, "Succeeded", "Failed"), what="the verdict")


def test_a_stored_series_is_announced_never_copied_into_the_status(
    cluster: Cluster, operator: KopfRunner
) -> None:
    text = _stored_series(120)
    status = _finish(cluster, "report", series=text)
    assert status["phase"] == "Succeeded"
    event = wait_for(
        lambda: next((e for e in cluster.events("report") if e["reason"] == "ReportReady"), None),
        what="the ReportReady event",
    )
    assert event["type"] == "Normal" and "(120 frames)" in event["message"]
    assert "kubectl rebound report report -n emulated" in event["message"]
    flat = json.dumps(cluster.session("report"))
    assert '"type":"frame"' not in flat.replace(" ", "") and len(flat) < 20_000


def test_a_forged_or_broken_series_is_a_warning_and_changes_no_result(
    cluster: Cluster, operator: KopfRunner
) -> None:
    broken = _stored_series(30).replace('"outcome":"matched"', '"outcome":"perfect"', 1)
    status = _finish(cluster, "forged", series=broken)
    assert (status["phase"], status["reason"]) == ("Succeeded", "Completed")
    event = wait_for(
        lambda: next(
            (e for e in cluster.events("forged") if e["reason"] == "MalformedSeries"), None
        ),
        what="the MalformedSeries warning",
    )
    assert event["type"] == "Warning"
    assert event["message"] == "ignored data.series: invalid lines: bad_outcome 1"
    assert not [e for e in cluster.events("forged") if e["reason"] == "ReportReady"]


def test_a_live_view_session_says_how_to_open_it(cluster: Cluster, operator: KopfRunner) -> None:
    cluster.create("viewed", liveView=True, **SMALL)
    event = wait_for(
        lambda: next((e for e in cluster.events("viewed") if e["reason"] == "LiveView"), None),
        what="the LiveView event",
    )
    assert "kubectl -n emulated port-forward pod/viewed-server 8090" in event["message"]
    pods = {p["metadata"]["name"]: p for p in cluster.children("viewed")["v1/pods"]}
    args = pods["viewed-server"]["spec"]["containers"][0]["args"]
    assert args[args.index("--view-port") + 1] == "8090"
    assert "--view-port" not in pods["viewed-client"]["spec"]["containers"][0]["args"]
