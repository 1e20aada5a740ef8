"""Where the local cluster lives: its state folder, addresses, ports and names (pure).

Network (all of it on this machine), one /24 per segment of 10.213.0.0/16, routed by the host:
- the control plane runs in a network namespace of its own (`rb-cp`, 10.213.0.2; the API
  server refuses a loopback advertise address) on the bridge `rb0` (host side 10.213.0.1);
- process node *i* (1, 2, ...) has a bridge of its own, `rb0-<i>`, whose host-side address
  10.213.<i>.1 is the node's InternalIP and its pods' gateway; each of its pods gets a network
  namespace with an address from 10.213.<i>.2 upwards (its pod CIDR 10.213.<i>.0/24).
Traffic between pods of different nodes, and from pods to the API server, is routed through
the host (IP forwarding), as between the nodes of a real cluster with host-gateway routing.
"""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
NODE_NAME = "rebound-node"
"""The first process node's name; the others are `rebound-node-2`, `rebound-node-3`, ..."""
CLUSTER_NAME = "rebound-local"
DEFAULT_NODES = 2
MAX_NODES = 8
SEGMENT_PREFIX = 24


@dataclass(frozen=True)
class NodeLayout:
    """One process node: its name, bridge, address and pod address range."""

    index: int
    """1-based."""
    name: str
    bridge: str
    cidr: str
    """Its pods' range (spec.podCIDR); the first address is the node's own."""

    @property
    def _net(self) -> ipaddress.IPv4Network:
        return ipaddress.IPv4Network(self.cidr)

    @property
    def address(self) -> str:
        """The node's InternalIP: its bridge's host-side address, its pods' gateway."""
        return str(self._net.network_address + 1)

    @property
    def prefix_length(self) -> int:
        """The pod range's prefix length."""
        return self._net.prefixlen

    @property
    def component(self) -> str:
        """Its daemon's name (pid file, log file, kubeconfig, certificates)."""
        return "process-node" if self.index == 1 else f"process-node-{self.index}"

    def pod_ip(self, index: int) -> str:
        """The address of the `index`-th pod (0-based) of this node, from .2 upwards."""
        address = self._net.network_address + 2 + index
        if address == self._net.broadcast_address or address not in self._net:
            raise ValueError(f"pod address space of node {self.name} ({self.cidr}) exhausted")
        return str(address)

    @property
    def max_pods(self) -> int:
        """How many pod addresses the range holds."""
        return self._net.num_addresses - 3


@dataclass(frozen=True)
class Layout:
    """All paths and addresses of one local cluster."""

    state: Path
    bridge: str = "rb0"
    network: str = "10.213.0.0/16"
    control_plane_netns: str = "rb-cp"
    pod_netns_prefix: str = "rb-pod-"
    api_port: int = 6443
    kubelet_port: int = 10250
    service_cidr: str = "10.0.0.0/24"
    node_count: int = DEFAULT_NODES

    @classmethod
    def default(cls) -> Layout:
        """The repository's `.cluster/` folder (or $REBOUND_CLUSTER_STATE), with
        $REBOUND_CLUSTER_NODES process nodes (default 2, at most 8)."""
        configured = os.environ.get("REBOUND_CLUSTER_STATE")
        count = os.environ.get("REBOUND_CLUSTER_NODES", "")
        nodes = int(count) if count.isdigit() else DEFAULT_NODES
        return cls(
            state=Path(configured) if configured else REPO / ".cluster",
            node_count=min(max(nodes, 1), MAX_NODES),
        )

    @property
    def _net(self) -> ipaddress.IPv4Network:
        return ipaddress.IPv4Network(self.network)

    def _segment(self, index: int) -> ipaddress.IPv4Network:
        size = 2 ** (32 - SEGMENT_PREFIX)
        segment = ipaddress.IPv4Network(
            (int(self._net.network_address) + index * size, SEGMENT_PREFIX)
        )
        if not segment.subnet_of(self._net):
            raise ValueError(f"{self.network} has no room for segment {index}")
        return segment

    @property
    def prefix_length(self) -> int:
        """The prefix length of each segment (the control plane's, each node's)."""
        return SEGMENT_PREFIX

    @property
    def host_ip(self) -> str:
        """The host's address on the control plane's bridge (the control plane's gateway)."""
        return str(self._segment(0).network_address + 1)

    @property
    def nodes(self) -> tuple[NodeLayout, ...]:
        """The process nodes, first `rebound-node`, then `rebound-node-2`, ..."""
        return tuple(
            NodeLayout(
                index=i,
                name=NODE_NAME if i == 1 else f"{NODE_NAME}-{i}",
                bridge=f"{self.bridge}-{i}",
                cidr=str(self._segment(i)),
            )
            for i in range(1, self.node_count + 1)
        )

    def node(self, name: str) -> NodeLayout:
        """The process node called `name` (KeyError if there is none)."""
        for node in self.nodes:
            if node.name == name:
                return node
        raise KeyError(name)

    @property
    def api_ip(self) -> str:
        """The API server's advertise address inside the control plane's namespace."""
        return str(self._segment(0).network_address + 2)

    @property
    def api_url(self) -> str:
        """https://<api_ip>:<port>."""
        return f"https://{self.api_ip}:{self.api_port}"

    @property
    def kubernetes_service_ip(self) -> str:
        """The first address of the service range: the `kubernetes` Service's ClusterIP."""
        return str(ipaddress.IPv4Network(self.service_cidr).network_address + 1)

    @property
    def pki(self) -> Path:
        """Certificates and keys."""
        return self.state / "pki"

    @property
    def logs(self) -> Path:
        """One log file per component."""
        return self.state / "logs"

    @property
    def etcd_data(self) -> Path:
        """etcd's data folder."""
        return self.state / "etcd"

    @property
    def pods(self) -> Path:
        """Per-pod folders of the process node (volumes, container logs)."""
        return self.state / "pods"

    @property
    def pids(self) -> Path:
        """One pid file per daemon."""
        return self.state / "pids"

    @property
    def kubeconfig(self) -> Path:
        """The admin kubeconfig (`export KUBECONFIG=...`)."""
        return self.state / "kubeconfig"

    def component_kubeconfig(self, component: str) -> Path:
        """The kubeconfig a component uses to reach the API server."""
        return self.state / f"{component}.kubeconfig"

    def log(self, component: str) -> Path:
        """The log file of one component."""
        return self.logs / f"{component}.log"
