"""The system packages the real tiers need: find what is missing and install it with apt-get.

The local cluster needs iproute2, util-linux and iptables (the process node enforces
NetworkPolicy with iptables); kind needs docker.io and debootstrap. A fresh Debian machine
has none of iptables, docker.io or debootstrap, so `make cluster-up` and `make e2e` install
what is missing when they can (root and apt-get; `REBOUND_NO_APT=1` forbids it) and otherwise
say in one line which packages to install.

`python -m localcluster.packages TOOL...` does the same from a shell script (exit 1 with the
line on stderr when something is still missing).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterable
from pathlib import Path

# The Debian package that provides each command the tiers run.
PACKAGE_OF = {
    "ip": "iproute2",
    "nft": "nftables",
    "nsenter": "util-linux",
    "iptables": "iptables",
    "iptables-restore": "iptables",
    "docker": "docker.io",
    "dockerd": "docker.io",
    "runc": "runc",
    "debootstrap": "debootstrap",
    "gcc": "gcc",
    "git": "git",
}
# Packages a tool needs beyond its own (a static `gcc` link needs the C library's archive).
ALSO_NEEDS = {"gcc": ("libc6-dev",)}
APT_LOG = Path("/tmp/rebound-apt.log")
Say = Callable[[str], None]


def missing_tools(tools: Iterable[str]) -> list[str]:
    """The commands of `tools` that are not on PATH (in order, without repeats)."""
    seen: list[str] = []
    for tool in tools:
        if tool not in seen and shutil.which(tool) is None:
            seen.append(tool)
    return seen


def packages_for(tools: Iterable[str]) -> list[str]:
    """The Debian packages that provide `tools` (sorted, without repeats)."""
    packages: set[str] = set()
    for tool in tools:
        packages.add(PACKAGE_OF[tool])
        packages.update(ALSO_NEEDS.get(tool, ()))
    return sorted(packages)


def missing_line(tools: list[str], why_not_installed: str | None = None) -> str:
    """The one line that says what is missing and how to get it."""
    line = f"missing {', '.join(tools)}: apt-get install {' '.join(packages_for(tools))}"
    return f"{line} (not installed here: {why_not_installed})" if why_not_installed else line


def can_install() -> str | None:
    """None when this process may install packages with apt-get, else why not."""
    if os.environ.get("REBOUND_NO_APT"):
        return "REBOUND_NO_APT is set"
    if shutil.which("apt-get") is None:
        return "no apt-get"
    if os.geteuid() != 0:
        return "not root"
    return None


def apt_install(packages: list[str]) -> str | None:
    """`apt-get update && apt-get install -y PACKAGES`; None on success, else one line."""
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    with APT_LOG.open("a") as log:
        for argv in (
            ["apt-get", "update", "-qq"],
            ["apt-get", "install", "-y", "-qq", *packages],
        ):
            log.write(f"$ {' '.join(argv)}\n")
            log.flush()
            result = subprocess.run(argv, stdout=log, stderr=subprocess.STDOUT, env=env)
            if result.returncode != 0:
                return f"`{' '.join(argv)}` failed (exit {result.returncode}); see {APT_LOG}"
    return None


def ensure(tools: Iterable[str], say: Say) -> str | None:
    """Install the packages of the missing `tools` where possible; None when all are
    present afterwards, else the one line that says what is missing."""
    missing = missing_tools(tools)
    if not missing:
        return None
    why_not = can_install()
    if why_not is not None:
        return missing_line(missing, why_not)
    packages = packages_for(missing)
    say(f"installing {' '.join(packages)} (apt-get) for {', '.join(missing)} ...")
    failed = apt_install(packages)
    still = missing_tools(missing)
    if still:
        return missing_line(still, failed or "apt-get did not provide them")
    return None


def main(argv: list[str] | None = None) -> int:
    """`python -m localcluster.packages TOOL...`: exit 0 once every tool is installed."""
    tools = sys.argv[1:] if argv is None else argv
    unknown = [tool for tool in tools if tool not in PACKAGE_OF]
    if unknown:
        print(f"error: no package known for {', '.join(unknown)}", file=sys.stderr)
        return 2
    problem = ensure(tools, lambda line: print(line, flush=True))
    if problem:
        print(problem, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
