"""A lossy network link for sessions: two network namespaces joined by a veth pair, with an
nftables rule in each that drops a random share of the UDP packets arriving there (the
kernel's `numgen random`; this kernel has no netem). Dropping on arrival, not departure, keeps
the loss invisible to the sender, as on a real network (a packet dropped on the way out fails
its `sendto` with EPERM). TCP (the peers' signaling) is never dropped.

The server runs in one namespace and the client in the other (`LossyLink.wrap`); the client's
namespace drops server → client (media, RTCP sender reports, data channel), the server's
drops client → server (RTCP receiver reports and NACKs, coordinates). Needs root, `ip` and
`nft` (`unavailable()` says what is missing).
"""

from __future__ import annotations

import itertools
import os
import shutil
import subprocess
from types import TracebackType

SUBNET = "10.231.7"
SERVER_ADDRESS = f"{SUBNET}.1"
CLIENT_ADDRESS = f"{SUBNET}.2"
_names = itertools.count()


def unavailable() -> str | None:
    """None when a LossyLink can be built here, else why not (one line)."""
    if os.geteuid() != 0:
        return "a lossy link needs root (network namespaces and nftables)"
    missing = [tool for tool in ("ip", "nft") if shutil.which(tool) is None]
    if missing:
        return f"a lossy link needs {' and '.join(missing)} (apt-get install iproute2 nftables)"
    return None


def _rules(loss_pct: float) -> str:
    per_mille = round(loss_pct * 10)
    return (
        "table inet rebound_loss {\n"
        "  chain arriving {\n"
        "    type filter hook input priority 0; policy accept;\n"
        f"    meta l4proto udp numgen random mod 1000 < {per_mille} counter drop\n"
        "  }\n"
        "}\n"
    )


def _run(*argv: str, stdin: str | None = None) -> str:
    result = subprocess.run(argv, input=stdin, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: {result.stderr.strip()}")
    return result.stdout


class LossyLink:
    """Server and client namespaces; `to_client_pct` / `to_server_pct` of UDP dropped."""

    def __init__(self, to_client_pct: float, to_server_pct: float = 0.0) -> None:
        tag = f"{os.getpid()}-{next(_names)}"
        self.server_ns = f"rbloss-{tag}-s"
        self.client_ns = f"rbloss-{tag}-c"
        self._veth = (f"rbls{tag}"[:15], f"rblc{tag}"[:15])
        self.to_client_pct = to_client_pct
        self.to_server_pct = to_server_pct

    def __enter__(self) -> LossyLink:
        created: list[str] = []
        try:
            for ns in (self.server_ns, self.client_ns):
                _run("ip", "netns", "add", ns)
                created.append(ns)
            server_if, client_if = self._veth
            _run("ip", "link", "add", server_if, "type", "veth", "peer", "name", client_if)
            for ns, ifname, address, loss in (
                (self.server_ns, server_if, SERVER_ADDRESS, self.to_server_pct),
                (self.client_ns, client_if, CLIENT_ADDRESS, self.to_client_pct),
            ):
                _run("ip", "link", "set", ifname, "netns", ns)
                _run("ip", "-n", ns, "addr", "add", f"{address}/30", "dev", ifname)
                _run("ip", "-n", ns, "link", "set", ifname, "up")
                _run("ip", "-n", ns, "link", "set", "lo", "up")
                _run("ip", "netns", "exec", ns, "nft", "-f", "-", stdin=_rules(loss))
        except BaseException:
            for ns in created:
                subprocess.run(["ip", "netns", "del", ns], capture_output=True, check=False)
            raise
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        for ns in (self.server_ns, self.client_ns):  # the veth pair goes with them
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, check=False)

    def wrap(self, side: str, argv: list[str]) -> list[str]:
        """`argv` run inside the `side` ("server" or "client") namespace."""
        ns = self.server_ns if side == "server" else self.client_ns
        return ["ip", "netns", "exec", ns, *argv]

    def dropped(self) -> tuple[int, int]:
        """UDP packets dropped so far: (server → client, client → server)."""
        counts = []
        for ns in (self.client_ns, self.server_ns):
            text = _run("ip", "netns", "exec", ns, "nft", "list", "table", "inet", "rebound_loss")
            packets = text.split("counter packets ", 1)[1].split()[0]
            counts.append(int(packets))
        return counts[0], counts[1]
