"""Network namespaces, veth pairs and the bridge, through iproute2 (`ip`). Needs root.

Each namespace gets one veth pair: `eth0` inside, the other end enslaved to the bridge. Bridged
traffic may pass iptables' FORWARD chain (br_netfilter, e.g. once Docker set its policy to
DROP), so an ACCEPT rule for the bridge is added while the cluster is up.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
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


def _accept_rule(layout: Layout) -> list[str]:
    return ["FORWARD", "-i", layout.bridge, "-o", layout.bridge, "-j", "ACCEPT"]


def ensure_bridge(layout: Layout) -> None:
    """Create the bridge with the host's address (idempotent) and let bridged traffic pass."""
    if _ip("link", "show", layout.bridge, check=False).returncode != 0:
        _ip("link", "add", layout.bridge, "type", "bridge")
        _ip("addr", "add", f"{layout.host_ip}/{layout.prefix_length}", "dev", layout.bridge)
    _ip("link", "set", layout.bridge, "up")
    if shutil.which("iptables"):
        rule = _accept_rule(layout)
        present = subprocess.run(["iptables", "-C", *rule], capture_output=True)
        if present.returncode != 0:
            subprocess.run(["iptables", "-I", *rule], capture_output=True, check=False)


def remove_bridge(layout: Layout) -> None:
    """Delete the bridge and its iptables rule (absent is fine)."""
    if shutil.which("iptables"):
        while (
            subprocess.run(
                ["iptables", "-D", *_accept_rule(layout)], capture_output=True
            ).returncode
            == 0
        ):
            pass
    _ip("link", "del", layout.bridge, check=False)


def create_netns(name: str, address: str, layout: Layout) -> None:
    """A namespace with loopback up and `eth0` = `address` on the bridge (idempotent)."""
    delete_netns(name)
    host_end = host_veth_name(name)
    _ip("netns", "add", name)
    try:
        _ip("link", "add", host_end, "type", "veth", "peer", "name", "eth0", "netns", name)
        _ip("link", "set", host_end, "master", layout.bridge, "up")
        inside = ["netns", "exec", name, "ip"]
        _ip(*inside, "link", "set", "lo", "up")
        _ip(*inside, "addr", "add", f"{address}/{layout.prefix_length}", "dev", "eth0")
        _ip(*inside, "link", "set", "eth0", "up")
        _ip(*inside, "route", "add", "default", "via", layout.host_ip)
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
