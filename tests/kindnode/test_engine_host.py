"""dockerd's configuration and the host facts kind depends on (pure parts)."""

from __future__ import annotations

import sys

import pytest

from kindnode import engine, host

HYBRID = """\
tmpfs /sys/fs/cgroup tmpfs rw,relatime,mode=755 0 0
cgroup /sys/fs/cgroup/cpu cgroup rw,relatime,cpu 0 0
cgroup /sys/fs/cgroup/memory cgroup rw,nosuid,nodev,noexec,relatime,memory 0 0
cgroup /sys/fs/cgroup/pids cgroup rw,relatime,pids 0 0
cgroup /sys/fs/cgroup/systemd cgroup rw,relatime,name=systemd 0 0
cgroup2 /sys/fs/cgroup/unified cgroup2 rw,relatime 0 0
"""
UNIFIED = "cgroup2 /sys/fs/cgroup cgroup2 rw,nosuid,nodev,noexec,relatime 0 0\n"


def test_our_runtime_becomes_the_default_and_other_settings_stay() -> None:
    current = {"log-level": "warn", "runtimes": {"other": {"path": "/bin/other"}}}
    merged = engine.merged_config(current, "/usr/local/libexec/rebound/runc")
    assert merged == {
        "log-level": "warn",
        "runtimes": {
            "other": {"path": "/bin/other"},
            "rebound-runc": {"path": "/usr/local/libexec/rebound/runc"},
        },
        "default-runtime": "rebound-runc",
    }
    assert current == {"log-level": "warn", "runtimes": {"other": {"path": "/bin/other"}}}
    assert engine.merged_config(merged, "/usr/local/libexec/rebound/runc") == merged


def test_where_nothing_is_lacking_our_runtime_is_unregistered() -> None:
    ours = engine.merged_config({"debug": True}, "/w")
    assert engine.merged_config(ours, None) == {"debug": True}
    theirs = {"default-runtime": "crun", "runtimes": {"crun": {"path": "/usr/bin/crun"}}}
    assert engine.merged_config(theirs, None) == theirs


def test_the_cgroup_layout_is_read_from_mounts() -> None:
    hybrid = host.cgroup_layout(HYBRID)
    assert hybrid.mode == "hybrid"
    assert hybrid.v1_controllers == ("cpu", "memory", "pids")
    assert host.cgroup_layout(UNIFIED).mode == "v2"
    v1_only = "".join(line for line in HYBRID.splitlines(True) if "cgroup2" not in line)
    assert host.cgroup_layout(v1_only).mode == "v1"


STATIC = host.Kernel(
    filesystems={"sysfs", "tmpfs", "ext4", "overlay"},
    modular=False,
    nfqueue=True,
    xt_targets={"NFQUEUE", "MASQUERADE"},
)


def test_problems_are_one_line_each_and_none_on_a_capable_host() -> None:
    assert host.problems_in("linux", HYBRID, STATIC, 0) == []
    assert host.problems_in("linux", UNIFIED, STATIC, 0) == []
    assert host.problems_in("darwin", UNIFIED, STATIC, 0) == ["kind's nodes need Linux"]
    no_memory = HYBRID.replace("noexec,relatime,memory", "noexec,relatime")
    bare = host.Kernel({"ext4"}, modular=False, nfqueue=False, xt_targets=set())
    assert host.problems_in("linux", no_memory, bare, 1000) == [
        "building the node image and configuring dockerd need root",
        "the kernel has no overlay filesystem (containerd's snapshotter needs it)",
        "the kernel has no NFQUEUE (nfnetlink_queue and the xt NFQUEUE target): "
        "kube-network-policies cannot enforce NetworkPolicy",
        "cgroup v1 without the memory controller: kubelet needs it",
    ]


def test_a_modular_kernel_loads_what_it_has_not_loaded_yet() -> None:
    modular = host.Kernel({"ext4"}, modular=True, nfqueue=False, xt_targets=set())
    assert host.problems_in("linux", UNIFIED, modular, 0) == []


@pytest.mark.skipif(sys.platform != "linux", reason="reads /proc")
def test_this_hosts_facts_are_read() -> None:
    facts = host.kernel()
    assert facts.filesystems  # /proc/filesystems is never empty on Linux
