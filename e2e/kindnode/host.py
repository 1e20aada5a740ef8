"""What this host offers kind, read from /proc and /sys, and what cannot work (one line each).

Pure parsers over the texts of /proc/self/status, /proc/self/mounts and /proc/filesystems,
plus `problems()`, which reads them. Facts that only need handling (a cgroup v1 hybrid
layout, a bounding set without CAP_SYS_RESOURCE) are reported by `notes()`; facts that make
kind impossible (not Linux, no overlay filesystem, no cgroup memory controller, ...) by
`problems()`.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

from kindnode.runc_wrapper import bounding_set_lacks

V1_CONTROLLERS = frozenset(
    [
        "blkio",
        "cpu",
        "cpuacct",
        "cpuset",
        "devices",
        "freezer",
        "hugetlb",
        "memory",
        "misc",
        "net_cls",
        "net_prio",
        "perf_event",
        "pids",
        "rdma",
    ]
)


@dataclass(frozen=True)
class CgroupLayout:
    """How cgroups are mounted: "v2" (unified), "hybrid" (v1 + cgroup2 beside) or "v1"."""

    mode: str
    v1_controllers: tuple[str, ...]


def cgroup_layout(mounts_text: str) -> CgroupLayout:
    """The cgroup layout from /proc/self/mounts."""
    v1: list[str] = []
    unified_root = False
    unified_beside = False
    for line in mounts_text.splitlines():
        fields = line.split()
        if len(fields) < 4:
            continue
        target, fstype, options = fields[1], fields[2], fields[3].split(",")
        if fstype == "cgroup2":
            if target == "/sys/fs/cgroup":
                unified_root = True
            else:
                unified_beside = True
        elif fstype == "cgroup":
            v1 += [option for option in options if option in V1_CONTROLLERS]
    if unified_root:
        return CgroupLayout("v2", ())
    return CgroupLayout("hybrid" if unified_beside else "v1", tuple(sorted(set(v1))))


def filesystems(text: str) -> set[str]:
    """The filesystem types of /proc/filesystems."""
    return {line.split()[-1] for line in text.splitlines() if line.strip()}


def _read(path: str) -> str:
    try:
        return Path(path).read_text()
    except OSError:
        return ""


def lacking_capabilities() -> list[str]:
    """Capabilities this host's bounding set lacks (what `--privileged` cannot get)."""
    return bounding_set_lacks(_read("/proc/self/status"))


@dataclass(frozen=True)
class Kernel:
    """What the running kernel offers kind, read from /proc."""

    filesystems: set[str]
    modular: bool  # False: nothing can be loaded later, what is missing stays missing
    nfqueue: bool  # nfnetlink_queue (kube-network-policies hands packets to userspace)
    xt_targets: set[str]  # xtables targets registered (NFQUEUE through nft_compat)


def problems_in(platform: str, mounts_text: str, kernel: Kernel, euid: int) -> list[str]:
    """Why kind cannot run on a host with these facts (empty when it can)."""
    if platform != "linux":
        return ["kind's nodes need Linux"]
    found: list[str] = []
    if euid != 0:
        found.append("building the node image and configuring dockerd need root")
    if not kernel.modular and "overlay" not in kernel.filesystems:
        found.append("the kernel has no overlay filesystem (containerd's snapshotter needs it)")
    if not kernel.modular and not (kernel.nfqueue and "NFQUEUE" in kernel.xt_targets):
        found.append(
            "the kernel has no NFQUEUE (nfnetlink_queue and the xt NFQUEUE target): "
            "kube-network-policies cannot enforce NetworkPolicy"
        )
    layout = cgroup_layout(mounts_text)
    if layout.mode != "v2":
        for controller in ("memory", "cpu", "pids"):
            if controller not in layout.v1_controllers:
                found.append(f"cgroup v1 without the {controller} controller: kubelet needs it")
    return found


def kernel() -> Kernel:
    """The running kernel's facts."""
    return Kernel(
        filesystems=filesystems(_read("/proc/filesystems")),
        modular=Path("/proc/modules").exists(),
        nfqueue=Path("/proc/net/netfilter/nfnetlink_queue").exists(),
        xt_targets=set(_read("/proc/net/ip_tables_targets").split()),
    )


def problems() -> list[str]:
    """Why kind cannot run on this host (empty when it can)."""
    return problems_in(sys.platform, _read("/proc/self/mounts"), kernel(), os.geteuid())


def notes() -> list[str]:
    """What this host needs handled, one line each (for `python -m kindnode host`)."""
    found: list[str] = []
    layout = cgroup_layout(_read("/proc/self/mounts"))
    if layout.mode != "v2":
        found.append(
            f"cgroup {layout.mode}: kubelet runs with failCgroupV1: false "
            "(Kubernetes deprecates v1)"
        )
    lacking = lacking_capabilities()
    if lacking:
        found.append(
            f"bounding set lacks {', '.join(lacking)}: dockerd's default runtime strips "
            "it (runc wrapper); containerd restricts oom_score_adj in the nodes"
        )
    return found
