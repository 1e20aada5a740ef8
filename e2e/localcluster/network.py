"""Network namespaces, veth pairs and bridges, through iproute2 (`ip`). Needs root.

Each namespace gets one veth pair: `eth0` inside, the other end enslaved to a bridge (the
control plane's, or its node's), and a default route via the bridge's host-side address. The
host routes between the bridges (IP forwarding on). Bridged and routed traffic passes
iptables' FORWARD chain (e.g. once Docker set its policy to DROP), so an ACCEPT rule for the
cluster's bridges is added while the cluster is up.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from localcluster.layout import Layout

NETNS_DIR = Path("/run/netns")


class NetworkError(RuntimeError):
    """An `ip`/`iptables` command failed; the message carries its output."""


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(["ip", *args], capture_output=True, text=True)
    if check and result.returncode != 0:
        raise NetworkError(f"ip {' '.join(args)}: {result.stderr.strip() or result.returncode}")
    return result


def host_veth_name(netns: str) -> str:
    """A stable host-side interface name (<= 15 characters) for a namespace."""
    return "rbv" + hashlib.sha1(netns.encode()).hexdigest()[:10]


def missing_tools() -> list[str]:
    """The commands this module needs that are not installed."""
    return [tool for tool in ("ip",) if shutil.which(tool) is None]


IP_FORWARD = Path("/proc/sys/net/ipv4/ip_forward")


@dataclass(frozen=True)
class Segment:
    """A bridge and its host-side address: the gateway of the namespaces attached to it."""

    bridge: str
    gateway: str
    prefix_length: int


def segments(layout: Layout) -> list[Segment]:
    """The control plane's segment, then one per process node."""
    return [Segment(layout.bridge, layout.host_ip, layout.prefix_length)] + [
        Segment(node.bridge, node.address, node.prefix_length) for node in layout.nodes
    ]


def _accept_rule(layout: Layout) -> list[str]:
    # `rb0+` matches the control plane's bridge and every node's (`rb0-1`, ...).
    return ["FORWARD", "-i", f"{layout.bridge}+", "-o", f"{layout.bridge}+", "-j", "ACCEPT"]


def ensure_bridge(segment: Segment) -> None:
    """Create a bridge with its host-side address (idempotent)."""
    if _ip("link", "show", segment.bridge, check=False).returncode != 0:
        _ip("link", "add", segment.bridge, "type", "bridge")
        _ip("addr", "add", f"{segment.gateway}/{segment.prefix_length}", "dev", segment.bridge)
    _ip("link", "set", segment.bridge, "up")


def ensure_network(layout: Layout) -> None:
    """Every bridge of the cluster, IP forwarding between them, and the FORWARD rule."""
    for segment in segments(layout):
        ensure_bridge(segment)
    if IP_FORWARD.exists() and IP_FORWARD.read_text().strip() != "1":
        IP_FORWARD.write_text("1\n")
    if shutil.which("iptables"):
        rule = _accept_rule(layout)
        present = subprocess.run(["iptables", "-C", *rule], capture_output=True)
        if present.returncode != 0:
            subprocess.run(["iptables", "-I", *rule], capture_output=True, check=False)


def remove_bridges(layout: Layout) -> None:
    """Delete every bridge of the cluster and the iptables rule (absent is fine). IP
    forwarding stays on (other software on the host, e.g. Docker, relies on it too)."""
    if shutil.which("iptables"):
        while (
            subprocess.run(
                ["iptables", "-D", *_accept_rule(layout)], capture_output=True
            ).returncode
            == 0
        ):
            pass
    listed = _ip("-o", "link", "show", "type", "bridge", check=False).stdout
    found = {
        line.split(":")[1].strip().split("@")[0] for line in listed.splitlines() if ":" in line
    }
    ours = {s.bridge for s in segments(layout)}
    ours |= {name for name in found if name.startswith(f"{layout.bridge}-")}
    for bridge in sorted(ours):
        _ip("link", "del", bridge, check=False)


def create_netns(name: str, address: str, segment: Segment) -> None:
    """A namespace with loopback up and `eth0` = `address` on the segment's bridge, routed
    through its gateway (idempotent)."""
    delete_netns(name)
    host_end = host_veth_name(name)
    _ip("netns", "add", name)
    try:
        _ip("link", "add", host_end, "type", "veth", "peer", "name", "eth0", "netns", name)
        _ip("link", "set", host_end, "master", segment.bridge, "up")
        inside = ["netns", "exec", name, "ip"]
        _ip(*inside, "link", "set", "lo", "up")
        _ip(*inside, "addr", "add", f"{address}/{segment.prefix_length}", "dev", "eth0")
        _ip(*inside, "link", "set", "eth0", "up")
        _ip(*inside, "route", "add", "default", "via", segment.gateway)
    except NetworkError:
        delete_netns(name)
        raise


def delete_netns(name: str) -> None:
    """Remove a namespace and its veth pair (absent is fine)."""
    _ip("link", "del", host_veth_name(name), check=False)
    _ip("netns", "del", name, check=False)


def list_netns(prefix: str) -> list[str]:
    """Names of the existing namespaces that start with `prefix`."""
    if not NETNS_DIR.is_dir():
        return []
    return sorted(p.name for p in NETNS_DIR.iterdir() if p.name.startswith(prefix))


def pids_in(name: str) -> list[int]:
    """Processes whose network namespace is `name`."""
    result = _ip("netns", "pids", name, check=False)
    return [int(pid) for pid in result.stdout.split() if pid.isdigit()]


def netns_path(name: str) -> Path:
    """The bind-mounted namespace file that `setns` opens."""
    return NETNS_DIR / name
