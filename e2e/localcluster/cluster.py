"""`up` and `down` for the whole local cluster: build, control plane, process node, Rebound.

`up` leaves a cluster with Rebound installed the way a user installs it
(`kubectl apply -k manifests/overlays/local`: the operator runs as its Deployment's pod under
its own ServiceAccount and ClusterRole). On failure it stops what it started and keeps the
logs; `down` removes every process, network namespace, the bridge and the state folder.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from localcluster import build, controlplane, network, packages
from localcluster.controlplane import ClusterError
from localcluster.layout import REPO, Layout, NodeLayout

OVERLAY = REPO / "manifests" / "overlays" / "local"
OPERATOR_NAMESPACE = "rebound-system"
Log = Callable[[str], None]


# The commands the cluster runs: `ip` (namespaces, bridge), `nsenter`, and iptables for the
# process node's NetworkPolicy tables and the bridge's FORWARD rule.
TOOLS = ("ip", "nsenter", "iptables", "iptables-restore")


def install_packages(log: Log) -> str | None:
    """Install the Debian packages of missing tools where possible (root, apt-get); None when
    every tool is there, else the one line saying what is missing."""
    if sys.platform != "linux" or os.geteuid() != 0:
        return None  # preflight says why; nothing to install as a non-root user
    return packages.ensure(TOOLS, log)


def iptables_problem() -> str | None:
    """None when iptables can read the filter table here, else why not (one line)."""
    result = subprocess.run(
        ["iptables", "-w", "5", "-n", "-L", "FORWARD"], capture_output=True, text=True
    )
    if result.returncode == 0:
        return None
    detail = (result.stderr.strip().splitlines() or [f"exit {result.returncode}"])[-1]
    return f"iptables does not work here (the process node's NetworkPolicy needs it): {detail}"


def preflight(layout: Layout) -> str | None:
    """Why this machine cannot run the local cluster, or None."""
    if sys.platform != "linux":
        return "the local cluster needs Linux (network namespaces)"
    if os.geteuid() != 0:
        return "the local cluster needs root (network namespaces, mounts, changing uid)"
    missing = packages.missing_tools((*network.missing_tools(), *TOOLS))
    if missing:
        return packages.missing_line(missing)
    problem = iptables_problem()
    if problem:
        return problem
    cached = all((build.bin_dir() / name).is_file() for name in build.BINARIES)
    if not cached and shutil.which("go") is None:
        return "Go is not installed and no built control plane is cached (needed to build it)"
    venv_python = REPO / ".venv" / "bin" / "python"
    if not venv_python.exists():
        return f"{venv_python} is missing: run `make install` first"
    return None


def kubectl(layout: Layout, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run the cluster's own kubectl (same version as the server) with the admin kubeconfig."""
    binary = build.bin_dir() / "kubectl"
    command = [str(binary if binary.exists() else "kubectl"), *args]
    env = {**os.environ, "KUBECONFIG": str(layout.kubeconfig)}
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=timeout)


def _wait(what: str, check: Callable[[], bool], timeout: float, log_file: Path) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(1.0)
    raise ClusterError(f"{what} not reached after {timeout:g} s; see {log_file}")


def start_node(layout: Layout, node: NodeLayout, log: Log) -> None:
    """Start one process node's daemon and wait until its Node is Ready."""
    python = str(REPO / ".venv" / "bin" / "python")
    pid = controlplane.spawn(
        layout, node.component, [python, "-m", "localcluster.node", "--node", node.name]
    )

    def ready() -> bool:
        if not controlplane.alive(pid):
            raise ClusterError(
                f"{node.component} exited during start-up; see {layout.log(node.component)}"
            )
        result = kubectl(layout, "get", "node", node.name, "-o", "json")
        if result.returncode != 0:
            return False
        conditions = json.loads(result.stdout).get("status", {}).get("conditions") or []
        return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)

    _wait(f"node {node.name} Ready", ready, 60, layout.log(node.component))
    log(f"node {node.name} Ready (pid {pid}); its pods get addresses in {node.cidr}")


def install_rebound(layout: Layout, log: Log) -> None:
    """`kubectl apply -k manifests/overlays/local`, then wait for the operator's rollout."""
    operator_log = layout.log("process-node")
    _wait(
        "default ServiceAccount",
        lambda: (
            kubectl(layout, "get", "serviceaccount", "default", "-n", "default").returncode == 0
        ),
        60,
        layout.log("kube-controller-manager"),
    )
    applied = kubectl(layout, "apply", "-k", str(OVERLAY))
    if applied.returncode != 0:
        raise ClusterError(f"kubectl apply -k {OVERLAY} failed: {applied.stderr.strip()}")
    rollout = kubectl(
        layout,
        "-n",
        OPERATOR_NAMESPACE,
        "rollout",
        "status",
        "deployment/rebound-operator",
        "--timeout=180s",
        timeout=200,
    )
    if rollout.returncode != 0:
        raise ClusterError(
            f"the operator Deployment did not become available: {rollout.stderr.strip()}; "
            f"see {operator_log} and `kubectl -n {OPERATOR_NAMESPACE} logs deploy/rebound-operator`"
        )
    log("Rebound installed (kubectl apply -k manifests/overlays/local); operator available")


def up(layout: Layout, log: Log, *, install: bool = True) -> None:
    """Build if needed, start everything, install Rebound. ClusterError on any failure."""
    problem = install_packages(log) or preflight(layout)
    if problem:
        raise ClusterError(problem)
    started = time.monotonic()
    try:
        if not all((build.bin_dir() / n).is_file() for n in build.BINARIES):
            log(f"building Kubernetes {build.KUBERNETES_VERSION} (first time only) ...")
        bins = build.build()
    except build.BuildError as exc:
        raise ClusterError(f"build: {exc}") from None
    if controlplane.alive(controlplane.read_pid(layout, "kube-apiserver")):
        raise ClusterError("a local cluster is already running (make cluster-down first)")
    if network.pids_in(layout.control_plane_netns):
        raise ClusterError(
            f"another local cluster runs in network namespace {layout.control_plane_netns} "
            "(another checkout?): run `make cluster-down` there first"
        )
    clear_leftovers(layout, log)
    layout.state.mkdir(parents=True, exist_ok=True)
    try:
        creds = controlplane.make_credentials(layout)
        controlplane.start(layout, bins, creds, log)
        for node in layout.nodes:
            start_node(layout, node, log)
        if install:
            install_rebound(layout, log)
    except BaseException:
        controlplane.stop(layout, lambda _: None)
        raise
    log(f"local cluster up in {time.monotonic() - started:.0f} s")


def clear_leftovers(layout: Layout, log: Log) -> None:
    """Before an `up`: stop and remove whatever an earlier run that did not end with
    `down` (a failure, a kill, a reboot) left behind, so every cluster starts empty:
    an old etcd would bring back old pods, sessions and a stale operator."""
    controlplane.stop(layout, lambda _: None)
    if layout.state.exists():
        shutil.rmtree(layout.state)
        log(f"removed {layout.state}, left by an earlier run that did not end with cluster-down")


def down(layout: Layout, log: Log) -> None:
    """Stop everything and remove the state folder (logs included)."""
    controlplane.stop(layout, log)
    shutil.rmtree(layout.state, ignore_errors=True)
    log("local cluster removed")
