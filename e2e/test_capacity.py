"""The sizing the stories rely on (pure: no cluster needed)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from capacity import (
    MI,
    Room,
    free_room,
    more_than_any_node,
    one_session_at_a_time,
    pod_requests,
    pods_fitting,
    quantity,
    size_sessions,
)


def node(name: str, cpu: str, memory: str, **spec: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": name},
        "spec": spec,
        "status": {
            "allocatable": {"cpu": cpu, "memory": memory, "pods": "110"},
            "conditions": [{"type": "Ready", "status": "True"}],
        },
    }


def pod(node_name: str, cpu: str, memory: str, phase: str = "Running") -> dict[str, Any]:
    requests = {"cpu": cpu, "memory": memory}
    return {
        "spec": {"nodeName": node_name, "containers": [{"resources": {"requests": requests}}]},
        "status": {"phase": phase},
    }


KIND = node("kind-control-plane", "2", "8Gi")
SYSTEM = [pod("kind-control-plane", "950m", "290Mi"), pod("kind-control-plane", "100m", "128Mi")]


def test_room_is_allocatable_minus_the_requests_of_unfinished_pods() -> None:
    done = pod("kind-control-plane", "1", "1Gi", phase="Succeeded")
    pending = {"spec": {"containers": []}, "status": {"phase": "Pending"}}  # not bound
    (room,) = free_room([KIND], [*SYSTEM, done, pending])
    assert room == Room("kind-control-plane", Decimal("0.95"), Decimal(8192 - 418) * MI, 2)


def test_cordoned_tainted_and_unready_nodes_have_no_room() -> None:
    cordoned = node("a", "4", "8Gi", unschedulable=True)
    tainted = node("b", "4", "8Gi", taints=[{"key": "k", "effect": "NoSchedule"}])
    preferred = node("c", "4", "8Gi", taints=[{"key": "k", "effect": "PreferNoSchedule"}])
    unready = node("d", "4", "8Gi")
    unready["status"]["conditions"] = [{"type": "Ready", "status": "False"}]
    assert [r.node for r in free_room([cordoned, tainted, preferred, unready], [])] == ["c"]


def test_init_containers_and_overhead_count_as_the_scheduler_counts_them() -> None:
    spec = {
        "containers": [{"resources": {"requests": {"cpu": "100m"}}}, {"resources": {}}],
        "initContainers": [{"resources": {"requests": {"cpu": "1", "memory": "1Mi"}}}],
        "overhead": {"cpu": "10m"},
    }
    assert pod_requests({"spec": spec}) == {"cpu": Decimal("1.01"), "memory": Decimal(MI)}


def test_a_roomy_node_runs_the_stories_with_the_default_requests() -> None:
    process_node = free_room([node("rebound-node", "64", "128Gi")], [])
    sizing = size_sessions(process_node, 20)
    assert (sizing.sessions, sizing.resources) == (20, None)


def test_a_small_kind_node_runs_twenty_sessions_with_smaller_requests() -> None:
    rooms = free_room([KIND], SYSTEM)
    sizing = size_sessions(rooms, 20)
    assert sizing.sessions == 20 and sizing.resources is not None
    requests = sizing.resources["requests"]
    assert requests == {"cpu": "19m", "memory": "155Mi"}
    assert pods_fitting(rooms, quantity("19m"), quantity("155Mi")) >= 40
    assert sizing.resources["limits"] == {"cpu": "2000m", "memory": "1024Mi"}


def test_a_node_too_small_for_the_smallest_peers_runs_fewer_sessions() -> None:
    tiny = [Room("t", Decimal("0.1"), Decimal(1024 * MI), Decimal(1))]
    sizing = size_sessions(tiny, 20)
    assert sizing.sessions == 5  # 10 peers of 10m CPU
    assert sizing.resources is not None and sizing.resources["requests"]["cpu"] == "10m"


def test_one_session_at_a_time_and_never() -> None:
    rooms = free_room([KIND], SYSTEM)
    one = one_session_at_a_time(rooms)
    assert one["requests"]["cpu"] == "380m"
    assert pods_fitting(rooms, quantity("380m"), quantity(one["requests"]["memory"])) == 2
    never = more_than_any_node(rooms)
    assert never["requests"]["cpu"] == never["limits"]["cpu"] == "3000m"
