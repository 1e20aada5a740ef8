"""Placement on a real multi-node cluster (issue 13): a session's peers on two different nodes
with `placement: SeparateNodes`, or on one with `SameNode`; per-peer tolerations, node
selectors and priority classes admitted by Pod Security `restricted`; NetworkPolicy still
enforced for traffic between nodes; the gates and placement rules checked by the real API
server's CEL and schema.

Runs on the local cluster (two process nodes, `make e2e-local`) and on kind (one control
plane + one worker, `make e2e`); the peers tolerate the control plane's taint so that two
nodes are usable there. Skips with a line where fewer than two nodes are Ready.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest
from conftest import new_name
from helpers import NS, apply, dump, kubectl, kubectl_json, session_yaml, status_of, wait_for

pytestmark = pytest.mark.usefixtures("cluster")
CONTROL_PLANE_TAINT = {
    "key": "node-role.kubernetes.io/control-plane",
    "operator": "Exists",
    "effect": "NoSchedule",
}
PRIORITY_CLASS = "rebound-e2e-media"
UNLIMITED = {"frames": 0, "durationSeconds": 0, "activeDeadlineSeconds": 0}


def ready_nodes() -> list[str]:
    """Names of the Ready, schedulable nodes."""
    nodes = kubectl_json("get", "nodes")["items"]
    ready = []
    for node in nodes:
        conditions = (node.get("status") or {}).get("conditions") or []
        is_ready = any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)
        if is_ready and not (node.get("spec") or {}).get("unschedulable"):
            ready.append(str(node["metadata"]["name"]))
    return ready


@pytest.fixture(scope="module")
def two_nodes(cluster: None) -> list[str]:
    """At least two usable nodes, else skip saying so."""
    nodes = ready_nodes()
    if len(nodes) < 2:
        pytest.skip(f"placement stories need two Ready nodes; this cluster has {nodes}")
    return nodes


@pytest.fixture(scope="module")
def priority_class(cluster: None) -> Iterator[str]:
    """A PriorityClass for the peers (cluster-scoped; removed afterwards)."""
    body = {
        "apiVersion": "scheduling.k8s.io/v1",
        "kind": "PriorityClass",
        "metadata": {"name": PRIORITY_CLASS},
        "value": 1000,
        "description": "Rebound e2e: peers of the placement stories",
    }
    created = kubectl("apply", "-f", "-", check=False, stdin=json.dumps(body))
    assert created.returncode == 0, created.stderr
    yield PRIORITY_CLASS
    kubectl("delete", "priorityclass", PRIORITY_CLASS, "--ignore-not-found", check=False)


def start(sessions: list[str], spec: dict[str, Any], prefix: str) -> str:
    name = new_name(prefix)
    sessions.append(name)
    result = apply(session_yaml(name, json.dumps(spec)))
    assert result.returncode == 0, result.stderr
    return name


def pods_of(name: str) -> dict[str, dict[str, Any]]:
    pods = kubectl_json("-n", NS, "get", "pods", "-l", f"rebound.dev/session={name}")["items"]
    return {p["metadata"]["labels"]["rebound.dev/role"]: p for p in pods}


def test_separate_nodes_runs_the_peers_on_two_nodes(
    sessions: list[str], two_nodes: list[str], priority_class: str
) -> None:
    spec = {
        "frames": 150,
        "placement": "SeparateNodes",
        "expect": {"maxMeanErrorPx": 0.5, "minMatchedRatio": 0.9},
        "server": {
            "tolerations": [CONTROL_PLANE_TAINT],
            "nodeSelector": {"kubernetes.io/os": "linux"},
            "resources": {"requests": {"cpu": "250m"}},
        },
        "client": {"tolerations": [CONTROL_PLANE_TAINT], "priorityClassName": priority_class},
    }
    name = start(sessions, spec, "apart")
    try:
        wait_for(name, "condition=Succeeded", 300)
    except subprocess.CalledProcessError:
        pytest.fail(dump(name))
    status = status_of(name)
    assert status["serverNode"] != status["clientNode"], status
    assert {status["serverNode"], status["clientNode"]} <= set(two_nodes)
    # The path the media took across the nodes, as the peers measured it.
    assert status["candidatePair"] == "host/host udp", status
    assert status["metrics"]["codec"] == "VP8" and status["metrics"]["measured_bitrate_kbps"]
    pods = pods_of(name)
    for role in ("server", "client"):
        assert pods[role]["spec"]["nodeName"] == status[f"{role}Node"]
        assert pods[role]["status"]["podIP"] == status[f"{role}PodIP"]
    # What the operator set reached the pods through admission (Pod Security restricted).
    assert pods["client"]["spec"]["priorityClassName"] == priority_class
    assert pods["client"]["spec"]["priority"] == 1000
    assert pods["server"]["spec"]["containers"][0]["resources"]["requests"]["cpu"] == "250m"
    anti = pods["server"]["spec"]["affinity"]["podAntiAffinity"]
    assert anti["requiredDuringSchedulingIgnoredDuringExecution"][0]["topologyKey"] == (
        "kubernetes.io/hostname"
    )
    table = kubectl("-n", NS, "get", "ballsession", name, "-o", "wide").stdout
    print(table)
    header, row = table.strip().splitlines()
    assert "SERVER NODE" in header and "CLIENT NODE" in header
    assert status["serverNode"] in row.split() and status["clientNode"] in row.split()


def test_same_node_runs_the_peers_together(sessions: list[str], two_nodes: list[str]) -> None:
    peer = {"tolerations": [CONTROL_PLANE_TAINT]}
    spec = {"frames": 60, "placement": "SameNode", "server": peer, "client": peer}
    name = start(sessions, spec, "together")
    try:
        wait_for(name, "condition=Succeeded", 300)
    except subprocess.CalledProcessError:
        pytest.fail(dump(name))
    status = status_of(name)
    assert status["serverNode"] == status["clientNode"], status


PROBE_TCP = (
    "import socket, sys\n"
    "try:\n"
    "    socket.create_connection((sys.argv[1], 9), timeout=4).close()\n"
    "    print('open')\n"
    "except ConnectionRefusedError:\n"
    "    print('refused')\n"
    "except OSError as exc:\n"
    "    print('blocked', exc)\n"
)


def probe(name: str, node: str, target: str) -> str:
    """A restricted, unlabelled pod on `node` that tries TCP to `target` port 9 and prints
    `refused` (reached it: nothing listens there), `blocked` (dropped) or `open`."""
    body = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": NS},
        "spec": {
            "restartPolicy": "Never",
            "automountServiceAccountToken": False,
            "nodeSelector": {"kubernetes.io/hostname": node},
            "tolerations": [CONTROL_PLANE_TAINT],
            "securityContext": {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [
                {
                    "name": "probe",
                    "image": "rebound-peer:0.1.0",
                    "imagePullPolicy": "IfNotPresent",
                    "command": ["python", "-c", PROBE_TCP, target],
                    "securityContext": {
                        "allowPrivilegeEscalation": False,
                        "capabilities": {"drop": ["ALL"]},
                    },
                }
            ],
        },
    }
    created = kubectl("apply", "-f", "-", check=False, stdin=json.dumps(body))
    assert created.returncode == 0, created.stderr
    try:
        wait_for(name, "jsonpath={.status.phase}=Succeeded", 120, kind="pod")
        return kubectl("-n", NS, "logs", name).stdout.strip()
    finally:
        kubectl("-n", NS, "delete", "pod", name, "--wait=false", check=False)


def test_network_policy_holds_across_nodes(sessions: list[str], two_nodes: list[str]) -> None:
    """A session split over two nodes runs under its NetworkPolicy (it connects: allowed
    traffic crosses nodes); a pod on the other node that is not its peer cannot reach the
    server pod, while it reaches an unprotected pod on that same node."""
    peer = {"tolerations": [CONTROL_PLANE_TAINT]}
    spec = {**UNLIMITED, "placement": "SeparateNodes", "server": peer, "client": peer}
    name = start(sessions, spec, "fenced")
    wait_for(name, "jsonpath={.status.phase}=Connected", 240)
    status = status_of(name)
    server_node, client_node = status["serverNode"], status["clientNode"]
    assert server_node != client_node
    # An unprotected target on the server's node: its closed port answers with a reset.
    target = new_name("target")
    body = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": target, "namespace": NS},
        "spec": {
            "nodeSelector": {"kubernetes.io/hostname": server_node},
            "tolerations": [CONTROL_PLANE_TAINT],
            "automountServiceAccountToken": False,
            "securityContext": {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [
                {
                    "name": "idle",
                    "image": "rebound-peer:0.1.0",
                    "imagePullPolicy": "IfNotPresent",
                    "command": ["python", "-c", "import time; time.sleep(600)"],
                    "securityContext": {
                        "allowPrivilegeEscalation": False,
                        "capabilities": {"drop": ["ALL"]},
                    },
                }
            ],
        },
    }
    assert kubectl("apply", "-f", "-", check=False, stdin=json.dumps(body)).returncode == 0
    try:
        wait_for(target, "condition=Ready", 120, kind="pod")
        target_ip = kubectl_json("-n", NS, "get", "pod", target)["status"]["podIP"]
        # First the path itself: from the client's node to an unprotected pod on the server's
        # node (a just-started pod may miss a first probe; the path must answer within three).
        answers = []
        for _ in range(3):
            answers.append(probe(new_name("probe"), client_node, target_ip))
            if answers[-1] == "refused":
                break
        fenced = probe(new_name("probe"), client_node, status["serverPodIP"])
    finally:
        kubectl("-n", NS, "delete", "pod", target, "--wait=false", check=False)
    assert answers[-1] == "refused", f"the unprotected pod on {server_node} answered {answers}"
    assert fenced.startswith("blocked"), f"the fenced server pod answered {fenced!r}"


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("{maxMeanErrorPx: 0.5, expect: {maxMeanErrorPx: 0.5}}", "set only expect.maxMeanErrorPx"),
        ("{fps: 15, expect: {minFps: 20}}", "expect.minFps can never be met"),
        ("{placement: Elsewhere}", "Unsupported value"),
        ("{server: {nodeName: node-1}}", 'unknown field "spec.server.nodeName"'),
        (
            "{client: {affinity: {nodeAfinity: {}}}}",
            'unknown field "spec.client.affinity.nodeAfinity"',
        ),
        ("{expect: {minMatchedRatio: 2}}", "spec.expect.minMatchedRatio"),
    ],
)
def test_admission_refuses_bad_gates_and_placement(spec: str, message: str) -> None:
    refused = apply(session_yaml(new_name("bad"), spec))
    assert refused.returncode != 0 and message in refused.stderr, refused.stderr
