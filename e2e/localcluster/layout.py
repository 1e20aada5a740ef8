"""Where the local cluster lives: its state folder, addresses, ports and names (pure).

Network: a Linux bridge `rb0` (10.213.0.1/16) in the host's network namespace. The control
plane runs in its own network namespace `rb-cp`, attached to the bridge as 10.213.0.2 (the
API server refuses a loopback advertise address). Every pod gets a network namespace of its
own with an address from 10.213.1.0 upwards. All traffic stays on this machine.
"""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
NODE_NAME = "rebound-node"
CLUSTER_NAME = "rebound-local"


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

    @classmethod
    def default(cls) -> Layout:
        """The repository's `.cluster/` folder (or $REBOUND_CLUSTER_STATE)."""
        configured = os.environ.get("REBOUND_CLUSTER_STATE")
        return cls(state=Path(configured) if configured else REPO / ".cluster")

    @property
    def _net(self) -> ipaddress.IPv4Network:
        return ipaddress.IPv4Network(self.network)

    @property
    def prefix_length(self) -> int:
        """The bridge network's prefix length."""
        return self._net.prefixlen

    @property
    def host_ip(self) -> str:
        """The bridge's address: the node's InternalIP (kubelet API, pods' gateway)."""
        return str(self._net.network_address + 1)

    @property
    def api_ip(self) -> str:
        """The API server's advertise address inside the control plane's namespace."""
        return str(self._net.network_address + 2)

    @property
    def api_url(self) -> str:
        """https://<api_ip>:<port>."""
        return f"https://{self.api_ip}:{self.api_port}"

    @property
    def kubernetes_service_ip(self) -> str:
        """The first address of the service range: the `kubernetes` Service's ClusterIP."""
        return str(ipaddress.IPv4Network(self.service_cidr).network_address + 1)

    def pod_ip(self, index: int) -> str:
        """The address of the `index`-th pod (0-based), from x.x.1.1 upwards."""
        address = self._net.network_address + 257 + index
        if address not in self._net or address == self._net.broadcast_address:
            raise ValueError(f"pod address space of {self.network} exhausted")
        return str(address)

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
