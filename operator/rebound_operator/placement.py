"""Where a session's peers run: the scheduling fields of each peer pod, and where the
scheduler and the kubelet actually put it (pure).

A peer pod gets its role's `nodeSelector`, `affinity`, `tolerations` and
`priorityClassName` (`spec.server`, `spec.client`); never a `nodeName`, so scheduling stays the
scheduler's. `spec.placement` adds one required inter-pod term on the session's peer label,
with the node as topology, to each pod's own affinity:

- `SeparateNodes`: pod anti-affinity, appended to the user's required anti-affinity terms
  (required terms are ANDed, so the user's terms still hold too);
- `SameNode`: pod affinity, appended likewise (the first peer may go anywhere the user's
  terms allow, the second joins it);
- `Any`: nothing is added.

What a pod reports about its node and address is read back bounded and validated.
"""

from __future__ import annotations

import copy
import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from rebound_operator.spec import DNS_SUBDOMAIN, BallSessionSpec

HOSTNAME_TOPOLOGY = "kubernetes.io/hostname"
"""The well-known node label every kubelet sets: one value per node."""
_NODE_NAME = re.compile(DNS_SUBDOMAIN)
MAX_NODE_NAME = 253


def affinity(
    spec: BallSessionSpec, role: str, selector: Mapping[str, Any]
) -> dict[str, Any] | None:
    """The pod's affinity: the role's own, plus the term `spec.placement` asks for."""
    own = spec.peer(role).affinity
    result: dict[str, Any] = copy.deepcopy(dict(own)) if own else {}
    kind = {"SeparateNodes": "podAntiAffinity", "SameNode": "podAffinity"}.get(spec.placement)
    if kind is not None:
        term = {"labelSelector": copy.deepcopy(dict(selector)), "topologyKey": HOSTNAME_TOPOLOGY}
        section = result.setdefault(kind, {})
        required = section.setdefault("requiredDuringSchedulingIgnoredDuringExecution", [])
        required.append(term)
    return result or None


def scheduling(spec: BallSessionSpec, role: str, selector: Mapping[str, Any]) -> dict[str, Any]:
    """The pod spec fields that decide where a peer may run (only those that are set);
    `selector` is the label selector of the session's two peer pods."""
    peer = spec.peer(role)
    fields: dict[str, Any] = {}
    if peer.node_selector:
        fields["nodeSelector"] = dict(peer.node_selector)
    merged = affinity(spec, role, selector)
    if merged:
        fields["affinity"] = merged
    if peer.tolerations:
        fields["tolerations"] = [
            t.model_dump(by_alias=True, exclude_none=True) for t in peer.tolerations
        ]
    if peer.priority_class_name:
        fields["priorityClassName"] = peer.priority_class_name
    return fields


# ---- where a pod landed ----------------------------------------------------------------


@dataclass(frozen=True)
class Landing:
    """The node a peer pod was bound to and the address it got (None until known)."""

    node: str | None = None
    pod_ip: str | None = None

    @classmethod
    def of(cls, pod: Mapping[str, Any] | None) -> Landing:
        """Read `spec.nodeName` and `status.podIP`; anything malformed counts as unknown."""
        if not isinstance(pod, Mapping):
            return cls()
        spec = pod.get("spec")
        status = pod.get("status")
        node = spec.get("nodeName") if isinstance(spec, Mapping) else None
        address = status.get("podIP") if isinstance(status, Mapping) else None
        return cls(node=valid_node_name(node), pod_ip=valid_ip(address))


def valid_node_name(value: Any) -> str | None:
    """`value` if it is a node name (an RFC 1123 subdomain), else None."""
    if isinstance(value, str) and 0 < len(value) <= MAX_NODE_NAME and _NODE_NAME.match(value):
        return value
    return None


def valid_ip(value: Any) -> str | None:
    """`value` as a canonical IPv4/IPv6 address, else None."""
    if not isinstance(value, str) or len(value) > 45:
        return None
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        return None


def placement_status(server: Landing, client: Landing) -> dict[str, str]:
    """`serverNode`, `serverPodIP`, `clientNode`, `clientPodIP`: only what is known."""
    status: dict[str, str] = {}
    for role, landing in (("server", server), ("client", client)):
        if landing.node:
            status[f"{role}Node"] = landing.node
        if landing.pod_ip:
            status[f"{role}PodIP"] = landing.pod_ip
    return status
