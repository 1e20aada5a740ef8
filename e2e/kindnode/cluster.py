"""The kind cluster `make e2e` runs on: two nodes, both schedulable, from the node image
built here (or `KIND_NODE_IMAGE`), its kubeconfig in `.kind/kubeconfig`.

`config()` is pure: the kind configuration for this host. `up()` creates the cluster and
waits until every node container has registered and is Ready and every kube-system DaemonSet
and Deployment (kube-proxy, CoreDNS, the pod network, NetworkPolicy) has rolled out, so the
first workload finds DNS and the `kubernetes` Service working.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from localcluster.layout import REPO

STATE = REPO / ".kind"
KUBECONFIG = STATE / "kubeconfig"
Say = Callable[[str], None]


class KindClusterError(RuntimeError):
    """The cluster could not be created or did not become ready; one line."""


def config(workers: int = 1, restrict_oom_score_adj: bool = False) -> str:
    """The kind configuration: one control plane that also runs workloads, `workers` workers.

    - kubelet 1.37 refuses cgroup v1 unless `failCgroupV1: false` (no-op on cgroup v2);
    - the control plane keeps no NoSchedule taint (kind only removes it on one-node
      clusters), so sessions' peers may land on either node;
    - where the host cannot grant CAP_SYS_RESOURCE, containerd in every node must not give
      sandboxes a lower oom_score_adj than its own (kind's own images set false).
    """
    lines = [
        "kind: Cluster",
        "apiVersion: kind.x-k8s.io/v1alpha4",
        "nodes:",
        "  - role: control-plane",
        *["  - role: worker"] * workers,
        "kubeadmConfigPatches:",
        "  - |",
        "    kind: KubeletConfiguration",
        "    failCgroupV1: false",
        "  - |",
        "    kind: InitConfiguration",
        "    nodeRegistration:",
        "      taints: []",
    ]
    if restrict_oom_score_adj:
        lines += [
            "containerdConfigPatches:",
            "  - |-",
            '    [plugins."io.containerd.grpc.v1.cri"]',
            "      restrict_oom_score_adj = true",
        ]
    return "\n".join(lines) + "\n"


def _run(
    argv: list[str], timeout: float, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=env)


def kubectl_env(kubectl_dir: Path) -> dict[str, str]:
    """The environment for kubectl against this cluster (its kubeconfig, a matching kubectl)."""
    return {
        **os.environ,
        "KUBECONFIG": str(KUBECONFIG),
        "PATH": f"{kubectl_dir}:{os.environ.get('PATH', '')}",
    }


def exists(kind: Path, name: str) -> bool:
    """True when kind knows a cluster called `name`."""
    result = _run([str(kind), "get", "clusters"], 60)
    return name in result.stdout.split()


def last_line(text: str) -> str:
    """The last non-empty line of a command's output (for one-line errors)."""
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else "(no output)"


def unregistered(containers: list[str], registered: list[str]) -> list[str]:
    """The node containers whose kubelet has no Node object (pure). kind's `--wait` waits
    for the control plane only, and `kubeadm join` ends once the kubelet has its
    credentials: a worker whose kubelet then fails never registers, and nothing else says so."""
    known = {name.removeprefix("node/") for name in registered}
    return sorted(name for name in containers if name not in known)


def failure_line(text: str) -> str:
    """The line of a failed `kind create cluster` that says what failed (pure): the last one
    starting with "error" (kind's ERROR:, kubeadm's "error execution phase ..."), whose Go
    stack trace would otherwise end the output; else its last line."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    errors = [line for line in lines if line.lower().startswith("error")]
    return errors[-1] if errors else last_line(text)


def wait_registered(kind: Path, name: str, env: dict[str, str], deadline: float) -> None:
    """Every node container of the cluster registered as a Node, or an error naming the
    first that did not and where its kubelet logs."""
    listed = _run([str(kind), "get", "nodes", "--name", name], 60)
    containers = listed.stdout.split()
    while True:
        registered = _run(["kubectl", "get", "nodes", "-o", "name"], 60, env).stdout.split()
        missing = unregistered(containers, registered)
        if not missing:
            return
        if time.monotonic() > deadline:
            raise KindClusterError(
                f"node {missing[0]} never registered (its kubelet: "
                f"docker exec {missing[0]} journalctl -u kubelet)"
            )
        time.sleep(2)


def wait_ready(kind: Path, name: str, env: dict[str, str], say: Say, timeout: float = 300) -> None:
    """Every node container registered and Ready, every kube-system DaemonSet and
    Deployment rolled out."""
    deadline = time.monotonic() + timeout
    wait_registered(kind, name, env, time.monotonic() + min(timeout, 120))
    nodes = _run(
        [
            "kubectl",
            "wait",
            "--for=condition=Ready",
            "nodes",
            "--all",
            f"--timeout={int(timeout)}s",
        ],
        timeout + 30,
        env,
    )
    if nodes.returncode != 0:
        raise KindClusterError(f"nodes not Ready: {last_line(nodes.stderr)}")
    listed = _run(
        ["kubectl", "-n", "kube-system", "get", "daemonsets,deployments", "-o", "name"], 60, env
    )
    for workload in listed.stdout.split():
        remaining = max(int(deadline - time.monotonic()), 10)
        rollout = _run(
            [
                "kubectl",
                "-n",
                "kube-system",
                "rollout",
                "status",
                workload,
                f"--timeout={remaining}s",
            ],
            remaining + 30,
            env,
        )
        if rollout.returncode != 0:
            raise KindClusterError(f"{workload} did not roll out: {last_line(rollout.stderr)}")
    names = ", ".join(workload.split("/")[-1] for workload in listed.stdout.split())
    say(f"ready: every node, and in kube-system {names}")


def up(
    kind: Path,
    name: str,
    image: str,
    kubectl_dir: Path,
    say: Say,
    *,
    workers: int = 1,
    restrict_oom_score_adj: bool = False,
) -> None:
    """Create the cluster (unless it exists) and wait until it is ready for workloads."""
    STATE.mkdir(exist_ok=True)
    env = kubectl_env(kubectl_dir)
    if exists(kind, name):
        say(f"kind cluster {name} exists; reusing it")
    else:
        config_file = STATE / "kind-config.yaml"
        config_file.write_text(config(workers, restrict_oom_score_adj))
        say(f"kind create cluster --name {name} --image {image} ({1 + workers} nodes) ...")
        started = time.monotonic()
        created = subprocess.run(
            [
                str(kind),
                "create",
                "cluster",
                "--name",
                name,
                "--image",
                image,
                "--config",
                str(config_file),
                "--kubeconfig",
                str(KUBECONFIG),
                "--wait",
                "180s",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
        )
        if created.returncode != 0:
            print(created.stdout[-3000:])
            raise KindClusterError(f"kind create cluster failed: {failure_line(created.stdout)}")
        say(f"created in {time.monotonic() - started:.0f} s")
    if not KUBECONFIG.exists():
        exported = _run(
            [str(kind), "export", "kubeconfig", "--name", name, "--kubeconfig", str(KUBECONFIG)], 60
        )
        if exported.returncode != 0:
            raise KindClusterError(f"kind export kubeconfig: {last_line(exported.stderr)}")
    wait_ready(kind, name, env, say)


def down(kind: Path, name: str, say: Say) -> None:
    """Delete the cluster and its kubeconfig (absent is fine)."""
    if exists(kind, name):
        deleted = _run(
            [str(kind), "delete", "cluster", "--name", name, "--kubeconfig", str(KUBECONFIG)], 300
        )
        if deleted.returncode != 0:
            raise KindClusterError(f"kind delete cluster: {last_line(deleted.stderr)}")
        say(f"deleted kind cluster {name}")
    KUBECONFIG.unlink(missing_ok=True)
