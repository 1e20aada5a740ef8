"""How much room a cluster's nodes have for peer pods, and how to size the e2e sessions to it.

Pure: it reads Node and Pod objects (as `kubectl get -o json` returns them) and answers
questions in CPU cores and bytes. The stories use it so that the same suite passes on a
node that advertises 64 CPUs (the local cluster's process node) and on a 2-CPU kind node,
where a session with the default requests (500m CPU per peer) may not fit at all.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from kubernetes.utils import parse_quantity

MI = 1024**2
DEFAULT_REQUESTS = {"cpu": Decimal("0.5"), "memory": Decimal(256 * MI)}
"""What a peer requests when its BallSession says nothing (crds/ballsession.yaml)."""
DEFAULT_LIMITS = {"cpu": Decimal(2), "memory": Decimal(1024 * MI)}
MIN_CPU = Decimal("0.01")
MIN_MEMORY = Decimal(64 * MI)
"""Below this a peer is not sized down any further: the story runs fewer sessions instead."""
FILL = Decimal("0.8")
"""Sessions sized to share a node leave this fraction of its free room to them."""
ENDED = frozenset({"Succeeded", "Failed"})


@dataclass(frozen=True)
class Room:
    """What one schedulable node has left for new pods."""

    node: str
    cpu: Decimal
    memory: Decimal
    allocatable_cpu: Decimal


def quantity(value: Any) -> Decimal:
    """A Kubernetes quantity (`500m`, `2`, `256Mi`) as a number of base units."""
    return Decimal(parse_quantity(value))  # type: ignore[no-untyped-call]


def schedulable(node: Mapping[str, Any]) -> bool:
    """Ready, not cordoned, and no taint that keeps ordinary pods off it."""
    spec = node.get("spec") or {}
    if spec.get("unschedulable"):
        return False
    if any(t.get("effect") in ("NoSchedule", "NoExecute") for t in spec.get("taints") or []):
        return False
    conditions = (node.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def pod_requests(pod: Mapping[str, Any]) -> dict[str, Decimal]:
    """The CPU and memory the scheduler counts for a pod: its containers' requests summed,
    or its largest init container's if larger, plus its overhead."""
    spec = pod.get("spec") or {}
    total: dict[str, Decimal] = {}
    for resource in ("cpu", "memory"):

        def requested(container: Mapping[str, Any], resource: str = resource) -> Decimal:
            requests = (container.get("resources") or {}).get("requests") or {}
            return quantity(requests[resource]) if resource in requests else Decimal(0)

        containers = sum((requested(c) for c in spec.get("containers") or []), Decimal(0))
        inits = max((requested(c) for c in spec.get("initContainers") or []), default=Decimal(0))
        overhead = (spec.get("overhead") or {}).get(resource)
        total[resource] = max(containers, inits) + (quantity(overhead) if overhead else 0)
    return total


def free_room(nodes: Iterable[Mapping[str, Any]], pods: Iterable[Mapping[str, Any]]) -> list[Room]:
    """Each schedulable node's allocatable CPU and memory minus what its unfinished pods
    request, largest CPU first."""
    used: dict[str, dict[str, Decimal]] = {}
    for pod in pods:
        node = (pod.get("spec") or {}).get("nodeName")
        if not node or (pod.get("status") or {}).get("phase") in ENDED:
            continue
        for resource, amount in pod_requests(pod).items():
            totals = used.setdefault(node, {})
            totals[resource] = totals.get(resource, Decimal(0)) + amount
    rooms = []
    for node in nodes:
        if not schedulable(node):
            continue
        name = str(node["metadata"]["name"])
        allocatable = (node.get("status") or {}).get("allocatable") or {}
        taken = used.get(name, {})
        cpu = quantity(allocatable.get("cpu", 0))
        rooms.append(
            Room(
                name,
                cpu - taken.get("cpu", Decimal(0)),
                quantity(allocatable.get("memory", 0)) - taken.get("memory", Decimal(0)),
                cpu,
            )
        )
    return sorted(rooms, key=lambda r: r.cpu, reverse=True)


def pods_fitting(rooms: Iterable[Room], cpu: Decimal, memory: Decimal) -> int:
    """How many pods requesting `cpu` and `memory` the nodes can take at once."""
    return sum(max(min(math.floor(r.cpu / cpu), math.floor(r.memory / memory)), 0) for r in rooms)


def cpu_text(cores: Decimal) -> str:
    """Cores as a quantity in millicores, rounded down (`380m`)."""
    return f"{math.floor(cores * 1000)}m"


def memory_text(size: Decimal) -> str:
    """Bytes as a quantity in MiB, rounded down (`150Mi`)."""
    return f"{math.floor(size / MI)}Mi"


def resources(cpu: Decimal, memory: Decimal) -> dict[str, dict[str, str]]:
    """A BallSession's `resources`: these requests, limits at least the defaults."""
    return {
        "requests": {"cpu": cpu_text(cpu), "memory": memory_text(memory)},
        "limits": {
            "cpu": cpu_text(max(cpu, DEFAULT_LIMITS["cpu"])),
            "memory": memory_text(max(memory, DEFAULT_LIMITS["memory"])),
        },
    }


@dataclass(frozen=True)
class Sizing:
    """How many sessions a story runs at once, and the `resources` they need (None: the
    defaults fit)."""

    sessions: int
    resources: dict[str, dict[str, str]] | None


def size_sessions(rooms: list[Room], wanted: int) -> Sizing:
    """Fit `wanted` sessions (two peers each) at once: the default requests if they fit,
    else smaller ones sharing FILL of the free room; fewer sessions only if even the
    smallest requests (MIN_CPU, MIN_MEMORY) do not fit them all."""
    peers = 2 * wanted
    cpu, memory = DEFAULT_REQUESTS["cpu"], DEFAULT_REQUESTS["memory"]
    if pods_fitting(rooms, cpu, memory) >= peers:
        return Sizing(wanted, None)
    total_cpu = sum((r.cpu for r in rooms), Decimal(0))
    total_memory = sum((r.memory for r in rooms), Decimal(0))
    cpu = max(min(cpu, total_cpu * FILL / peers), MIN_CPU)
    memory = max(min(memory, total_memory * FILL / peers), MIN_MEMORY)
    cpu = Decimal(math.floor(cpu * 1000)) / 1000  # what the quantity will say
    memory = Decimal(math.floor(memory / MI) * MI)
    fitting = pods_fitting(rooms, cpu, memory)
    return Sizing(min(wanted, fitting // 2), resources(cpu, memory))


def one_session_at_a_time(rooms: list[Room]) -> dict[str, dict[str, str]]:
    """Requests such that the roomiest node takes the two peers of one session and no third
    peer (each peer asks 40% of its free CPU)."""
    cpu = Decimal(math.floor(rooms[0].cpu * Decimal("0.4") * 1000)) / 1000
    return resources(cpu, DEFAULT_REQUESTS["memory"])


def more_than_any_node(rooms: list[Room]) -> dict[str, dict[str, str]]:
    """Requests no schedulable node can ever satisfy: one core more than the largest
    allocatable CPU."""
    cpu = max((r.allocatable_cpu for r in rooms), default=Decimal(0))
    return resources(Decimal(math.ceil(cpu)) + 1, DEFAULT_REQUESTS["memory"])
