"""What only a real node shows (kind, `make e2e`): a kubelet, containerd and runc, cgroup
limits, a CNI across two nodes. Each story skips with one line where the tier lacks the
feature (the process node of `make e2e-local` runs pods as processes: no probes, exec,
port-forward, cgroups or second node).

- the operator Deployment's liveness probe is run by the kubelet and passes, and a wedged
  operator (its process stopped) is restarted by it;
- `kubectl exec` into a running peer, which runs read-only as the image's non-root user;
- `kubectl port-forward` to the operator's health port;
- a peer over its memory limit is OOMKilled and its session fails naming it;
- the peer image runs read-only under arbitrary UIDs, and two such pods on different nodes
  complete a session (TCP signaling, UDP media through the pod network).
"""

from __future__ import annotations

import json
import re
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from conftest import missing_tools, new_name
from helpers import (
    NS,
    OPERATOR_NS,
    apply,
    dump,
    fitted,
    kubectl,
    kubectl_json,
    phase_is,
    process_node,
    run,
    session_yaml,
    status_of,
)

pytestmark = pytest.mark.usefixtures("cluster")
PEER_IMAGE = "rebound-peer:0.1.0"
OPERATOR_SELECTOR = "app.kubernetes.io/name=rebound-operator"


@pytest.fixture(autouse=True)
def real_node() -> None:
    """These stories need a kubelet and a container runtime."""
    if process_node():
        pytest.skip("the process node has no kubelet, container runtime or cgroups (kind only)")


def operator_pod() -> dict[str, Any]:
    """The operator's running pod."""
    pods = kubectl_json("-n", OPERATOR_NS, "get", "pods", "-l", OPERATOR_SELECTOR)["items"]
    running = [p for p in pods if (p.get("status") or {}).get("phase") == "Running"]
    assert len(running) == 1, [p["metadata"]["name"] for p in pods]
    return dict(running[0])


def restarts(pod: dict[str, Any]) -> int:
    """The restart count of the pod's first container."""
    return int(
        ((pod.get("status") or {}).get("containerStatuses") or [{}])[0].get("restartCount", 0)
    )


def probe_results(node: str, pod: str) -> dict[str, float]:
    """The kubelet's liveness probe counters for `pod`, by result (its /metrics/probes)."""
    text = kubectl("get", "--raw", f"/api/v1/nodes/{node}/proxy/metrics/probes").stdout
    counts: dict[str, float] = {}
    for line in text.splitlines():
        ours = f'pod="{pod}"' in line and 'probe_type="Liveness"' in line
        result = re.search(r'result="(\w+)"', line)
        if line.startswith("prober_probe_total{") and ours and result:
            counts[result[1]] = float(line.rsplit(" ", 1)[1])
    return counts


def node_exec(node: str, *argv: str) -> subprocess.CompletedProcess[str]:
    """Run a command in a kind node's container (kind names them after their Node)."""
    if missing_tools("docker"):
        pytest.skip("needs docker to reach the kind nodes' containers")
    return run("docker", "exec", node, *argv, check=False)


def test_the_kubelet_runs_the_operators_liveness_probe_and_it_passes() -> None:
    pod = operator_pod()
    name, node = pod["metadata"]["name"], pod["spec"]["nodeName"]
    deadline = time.monotonic() + 120
    while (counts := probe_results(node, name)).get("successful", 0) < 2:
        assert time.monotonic() < deadline, f"liveness probe results for {name}: {counts}"
        time.sleep(2)
    assert counts.get("failed", 0) == 0, counts
    assert restarts(operator_pod()) == restarts(pod)


def test_a_wedged_operator_is_restarted_by_its_liveness_probe() -> None:
    """SIGSTOP the operator's process from its node: /healthz stops answering, the kubelet
    kills and restarts the container, the Deployment's pod serves again."""
    pod = operator_pod()
    name, node = pod["metadata"]["name"], pod["spec"]["nodeName"]
    before = restarts(pod)
    cid = pod["status"]["containerStatuses"][0]["containerID"].partition("://")[2]
    inspected = node_exec(node, "crictl", "inspect", cid)
    assert inspected.returncode == 0, inspected.stderr
    pid = json.loads(inspected.stdout)["info"]["pid"]
    assert node_exec(node, "kill", "-STOP", str(pid)).returncode == 0
    deadline = time.monotonic() + 240
    while restarts(current := operator_pod()) == before:
        assert time.monotonic() < deadline, "the stopped operator was never restarted"
        time.sleep(3)
    assert current["metadata"]["name"] == name  # the same pod: the kubelet restarted it
    events = kubectl(
        "-n",
        OPERATOR_NS,
        "get",
        "events",
        "--field-selector",
        f"involvedObject.name={name},reason=Unhealthy",
        "-o",
        "jsonpath={.items[*].message}",
    ).stdout
    assert "Liveness probe failed" in events, events
    kubectl(
        "-n",
        OPERATOR_NS,
        "rollout",
        "status",
        "deployment/rebound-operator",
        "--timeout=120s",
        timeout=150,
    )


@pytest.fixture
def connected_session(sessions: list[str]) -> Iterator[str]:
    """A session running until deleted, once Connected."""
    name = new_name("node")
    sessions.append(name)
    spec, _ = fitted("{frames: 0, durationSeconds: 0, activeDeadlineSeconds: 0}")
    assert apply(session_yaml(name, spec)).returncode == 0
    phase_is(name, "Connected", 240)
    yield name


def test_kubectl_exec_into_a_running_peer_finds_it_read_only_and_non_root(
    connected_session: str,
) -> None:
    pod = f"{connected_session}-server"
    script = (
        "import os\n"
        "print(os.getuid(), open('/proc/1/cmdline').read().replace('\\0', ' '))\n"
        "try:\n"
        "    open('/opt/written-by-exec', 'w')\n"
        "except OSError as error:\n"
        "    print('write refused:', error.strerror)\n"
    )
    result = kubectl("-n", NS, "exec", pod, "--", "python", "-c", script, check=False)
    assert result.returncode == 0, result.stderr
    uid, _, rest = result.stdout.partition(" ")
    assert int(uid) != 0 and "peers.server" in rest, result.stdout
    assert "write refused: Read-only file system" in result.stdout


def test_kubectl_port_forward_reaches_the_operators_health_endpoint() -> None:
    forward = subprocess.Popen(
        ["kubectl", "-n", OPERATOR_NS, "port-forward", "deployment/rebound-operator", ":8080"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert forward.stdout is not None
        line = forward.stdout.readline()  # "Forwarding from 127.0.0.1:PORT -> 8080"
        match = re.search(r"127\.0\.0\.1:(\d+)", line)
        assert match, line + (forward.stderr.read() if forward.poll() is not None else "")
        with urllib.request.urlopen(f"http://127.0.0.1:{match[1]}/healthz", timeout=10) as reply:
            assert reply.status == 200
    finally:
        forward.terminate()
        forward.wait(timeout=10)


def test_a_peer_over_its_memory_limit_is_oom_killed_and_the_session_names_it(
    sessions: list[str],
) -> None:
    name = new_name("oom")
    sessions.append(name)
    spec = (
        "{frames: 90, resources: {requests: {cpu: 100m, memory: 32Mi}, "
        "limits: {cpu: '1', memory: 48Mi}}}"
    )
    assert apply(session_yaml(name, spec)).returncode == 0
    try:
        phase_is(name, "Failed", 180)
    except subprocess.CalledProcessError:
        pytest.fail(dump(name))
    status = status_of(name)
    assert status["reason"] == "PodFailed", status
    assert "OOMKilled" in status["message"] and "137" in status["message"], status
    assert f"{name}-server" in status["message"] or f"{name}-client" in status["message"]


def schedulable_nodes() -> list[str]:
    """Nodes a plain pod may run on (no NoSchedule taint, not cordoned)."""
    nodes = kubectl_json("get", "nodes")["items"]
    return [
        node["metadata"]["name"]
        for node in nodes
        if not node["spec"].get("unschedulable")
        and not any(t.get("effect") == "NoSchedule" for t in node["spec"].get("taints") or [])
    ]


def peer_pod(name: str, node: str, uid: int, args: list[str]) -> dict[str, Any]:
    """A restricted pod of the peer image on `node`, as `uid`, read-only root filesystem."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": NS, "labels": {"e2e": "uid-pair"}},
        "spec": {
            "nodeName": node,
            "restartPolicy": "Never",
            "automountServiceAccountToken": False,
            "securityContext": {
                "runAsNonRoot": True,
                "runAsUser": uid,
                "runAsGroup": uid,
                "seccompProfile": {"type": "RuntimeDefault"},
            },
            "containers": [
                {
                    "name": "peer",
                    "image": PEER_IMAGE,
                    "imagePullPolicy": "IfNotPresent",
                    "command": ["python", "-m", *args],
                    "securityContext": {
                        "readOnlyRootFilesystem": True,
                        "allowPrivilegeEscalation": False,
                        "capabilities": {"drop": ["ALL"]},
                    },
                    "resources": {"requests": {"cpu": "100m", "memory": "256Mi"}},
                    "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
                }
            ],
            "volumes": [{"name": "tmp", "emptyDir": {"medium": "Memory", "sizeLimit": "64Mi"}}],
        },
    }


def pod_phase(name: str, timeout: float, phases: tuple[str, ...]) -> dict[str, Any]:
    """The pod once its phase is one of `phases` (AssertionError after `timeout` s)."""
    deadline = time.monotonic() + timeout
    while True:
        pod = kubectl_json("-n", NS, "get", "pod", name)
        if pod.get("status", {}).get("phase") in phases:
            return dict(pod)
        assert time.monotonic() < deadline, f"pod {name}: {pod.get('status', {}).get('phase')}"
        time.sleep(1)


def test_peer_pods_under_arbitrary_uids_on_two_nodes_complete_a_session() -> None:
    """No passwd entry, read-only root, a UID the image never heard of, and the two peers on
    different nodes: TCP signaling to the server pod's IP, then UDP media between the pods
    through the pod network (routes between the nodes) and back over the data channel."""
    nodes = schedulable_nodes()
    if len(nodes) < 2:
        pytest.skip(f"needs two schedulable nodes, the cluster has {nodes}")
    server, client = new_name("uid-server"), new_name("uid-client")
    created: list[str] = []
    try:
        server_args = ["peers.server", "offer", "--signaling-host", "0.0.0.0", "--frames", "150"]
        assert apply(json.dumps(peer_pod(server, nodes[0], 123456, server_args))).returncode == 0
        created.append(server)
        running = pod_phase(server, 120, ("Running", "Failed", "Succeeded"))
        assert running["status"]["phase"] == "Running", kubectl("-n", NS, "logs", server).stdout
        address = running["status"]["podIP"]
        client_args = ["peers.client", "answer", "--signaling-host", address]
        assert apply(json.dumps(peer_pod(client, nodes[1], 654321, client_args))).returncode == 0
        created.append(client)
        ended = {pod: pod_phase(pod, 180, ("Succeeded", "Failed")) for pod in (server, client)}
        logs = {pod: kubectl("-n", NS, "logs", pod, check=False).stdout for pod in ended}
        for pod, seen in ended.items():
            assert seen["status"]["phase"] == "Succeeded", f"{pod}:\n{logs[pod][-2000:]}"
        assert ended[server]["spec"]["nodeName"] != ended[client]["spec"]["nodeName"]
        matched = re.search(r"frames matched\s+(\d+)", logs[server])
        assert matched and int(matched[1]) > 100, logs[server][-2000:]
    finally:
        if created:
            kubectl("-n", NS, "delete", "pod", *created, "--wait=false", check=False)
