"""Sessions and the real scheduler: a session no node has room for is Pending with the
scheduler's words and ends `Unschedulable` at its pending timeout; a session queued behind
another waits for room and succeeds, its signaling clock starting only when both its peers
run. Requests are sized from the nodes' allocatable CPU (e2e/capacity.py), so the stories
mean the same on the process node (64 CPUs) and on a 2-CPU kind node."""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any

import pytest
from capacity import more_than_any_node, one_session_at_a_time
from helpers import (
    NS,
    cluster_room,
    create_session,
    dump,
    kubectl_json,
    phase_is,
    session_event_reasons,
    session_pods,
    status_of,
    wait_for,
)

pytestmark = pytest.mark.usefixtures("cluster")
PEERS = "app.kubernetes.io/component=peer"


def when(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def conditions(name: str) -> dict[str, dict[str, Any]]:
    return {c["type"]: c for c in status_of(name).get("conditions") or []}


def wait_for_no_running_peers(timeout: float = 120) -> None:
    """Earlier stories' peers (deleted with --wait=false) release their room first."""
    deadline = time.monotonic() + timeout
    while True:
        pods = kubectl_json("-n", NS, "get", "pods", "-l", PEERS)["items"]
        busy = [
            p["metadata"]["name"]
            for p in pods
            if (p.get("status") or {}).get("phase") not in ("Succeeded", "Failed")
        ]
        if not busy:
            return
        assert time.monotonic() < deadline, f"peer pods still hold room: {busy}"
        time.sleep(1)


def test_a_session_no_node_can_hold_waits_pending_then_fails_unschedulable(
    sessions: list[str],
) -> None:
    resources = more_than_any_node(cluster_room())
    spec = {"signalingTimeoutSeconds": 5, "pendingTimeoutSeconds": 20, "resources": resources}
    name = create_session(sessions, spec, "noroom")
    try:
        wait_for(name, "jsonpath={.status.reason}=Unschedulable", 60)
    except Exception:
        pytest.fail(dump(name))
    status = status_of(name)
    assert status["phase"] == "Pending", status
    assert "cannot be scheduled" in status["message"], status["message"]
    assert "Insufficient cpu" in status["message"], status["message"]  # the scheduler's words
    ready = conditions(name)["PodsReady"]
    assert (ready["status"], ready["reason"]) == ("False", "Unschedulable")
    assert conditions(name)["Reconciling"]["status"] == "True"

    # Past its signaling timeout it still waits; at its pending timeout it fails, saying why.
    phase_is(name, "Failed", 90)
    status = status_of(name)
    assert status["reason"] == "Unschedulable", dump(name)
    assert "could not be scheduled within 20 s" in status["message"], status["message"]
    assert "Insufficient cpu" in status["message"], status["message"]
    waited = when(status["completionTime"]) - when(status["startTime"])
    assert waited.total_seconds() >= 20, waited
    reasons = session_event_reasons(name)
    assert reasons.count("Unschedulable") >= 2, reasons  # while pending, and the verdict
    assert "SignalingTimeout" not in reasons, reasons
    deadline = time.monotonic() + 60
    while session_pods(name):  # nothing stays queued to start later
        assert time.monotonic() < deadline, f"pods left: {session_pods(name)}"
        time.sleep(1)


def test_a_queued_session_waits_for_room_and_succeeds(sessions: list[str]) -> None:
    wait_for_no_running_peers()
    rooms = cluster_room()
    resources = one_session_at_a_time(rooms)
    print(f"nodes: {rooms}; each peer requests {resources['requests']}")
    first = create_session(sessions, {"frames": 300, "resources": resources}, "first")
    phase_is(first, "Connected", 240)
    spec = {
        "frames": 90,
        "signalingTimeoutSeconds": 5,
        "pendingTimeoutSeconds": 600,
        "resources": resources,
    }
    queued = create_session(sessions, spec, "queued")
    if len(rooms) == 1:  # one node: no room anywhere while the first session runs
        try:
            wait_for(queued, "jsonpath={.status.reason}=Unschedulable", 60)
        except Exception:
            pytest.fail(dump(queued))
        assert "Insufficient cpu" in status_of(queued)["message"]
    try:
        wait_for(first, "condition=Succeeded", 300)
        wait_for(queued, "jsonpath={.status.completionTime}", 300)
    except Exception:
        pytest.fail(dump(queued))
    status = status_of(queued)
    assert (status["phase"], status["reason"]) == ("Succeeded", "Completed"), dump(queued)
    reasons = session_event_reasons(queued)
    assert "SignalingTimeout" not in reasons, reasons
    if len(rooms) == 1:
        assert "Unschedulable" in reasons, reasons
        # It waited for room far longer than its signaling timeout allows for signaling.
        started = [
            when(p["status"]["containerStatuses"][0]["state"]["terminated"]["startedAt"])
            for p in session_pods(queued)
        ]
        waited = max(started) - when(status["startTime"])
        assert waited.total_seconds() > 5, waited
