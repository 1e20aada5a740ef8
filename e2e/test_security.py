"""What only a real API server can show: each peer's ServiceAccount reaches its own signaling
ConfigMap and nothing else (RBAC with resourceNames), PodSecurity `restricted` is enforced in
the session namespace, and the install is GitOps-clean (server-side apply, empty diff)."""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import new_name
from helpers import NS, apply, fitted, kubectl, phase_is, process_node, session_yaml

pytestmark = pytest.mark.usefixtures("cluster")
REPO = Path(__file__).resolve().parents[1]


def can_i(account: str, verb: str, resource: str, name: str = "") -> bool:
    target = f"{resource}/{name}" if name else resource
    result = kubectl(
        "auth",
        "can-i",
        verb,
        target,
        "-n",
        NS,
        f"--as=system:serviceaccount:{NS}:{account}",
        check=False,
    )
    return result.stdout.strip() == "yes"


@pytest.fixture(scope="module")
def running_sessions(cluster: None) -> Iterator[tuple[str, str]]:
    """Two running sessions, so one's peers can be tried against the other's objects."""
    names = (new_name("rbac"), new_name("rbac"))
    spec, _ = fitted("{frames: 0, durationSeconds: 0, activeDeadlineSeconds: 0}", sessions=2)
    for name in names:
        assert apply(session_yaml(name, spec)).returncode == 0
    for name in names:
        phase_is(name, "Connected", 240)
    yield names
    for name in names:
        kubectl("-n", NS, "delete", "ballsession", name, "--wait=false", check=False)


def as_token(account: str, *args: str) -> tuple[int, str]:
    """Run kubectl with a real token of `account` (TokenRequest), nothing else."""
    token = kubectl("-n", NS, "create", "token", account, "--duration=10m").stdout.strip()
    view = json.loads(kubectl("config", "view", "--raw", "--minify", "-o", "json").stdout)
    cluster = view["clusters"][0]["cluster"]
    with tempfile.TemporaryDirectory() as folder:
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "c", "cluster": cluster}],
            "users": [{"name": "u", "user": {"token": token}}],
            "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u", "namespace": NS}}],
            "current-context": "x",
        }
        path = Path(folder) / "kubeconfig"
        path.write_text(json.dumps(config))
        result = kubectl("--kubeconfig", str(path), *args, check=False)
    return result.returncode, result.stdout + result.stderr


@pytest.mark.parametrize(("role", "other"), [("server", "client"), ("client", "server")])
def test_a_peer_reaches_its_own_configmap_and_nothing_else(
    running_sessions: tuple[str, str], role: str, other: str
) -> None:
    mine, theirs = running_sessions
    account = f"{mine}-{role}"
    own, peer = f"{mine}-{role}-signaling", f"{mine}-{other}-signaling"
    for verb in ("get", "watch", "patch"):
        assert can_i(account, verb, "configmaps", own), f"{account} cannot {verb} {own}"
    for verb in ("get", "watch"):
        assert can_i(account, verb, "configmaps", peer), f"{account} cannot {verb} {peer}"
    assert not can_i(account, "patch", "configmaps", peer), "a peer can forge the other's data"
    assert not can_i(account, "update", "configmaps", own)
    assert not can_i(account, "get", "configmaps", f"{theirs}-{role}-signaling")
    assert not can_i(account, "list", "configmaps")
    assert not can_i(account, "get", "secrets")
    assert not can_i(account, "create", "pods")

    code, out = as_token(account, "get", "configmap", own, "-o", "name")
    assert code == 0, out
    code, out = as_token(account, "get", "configmap", f"{theirs}-{role}-signaling")
    assert code != 0 and "forbidden" in out.lower()
    code, out = as_token(account, "get", "configmaps")
    assert code != 0 and "forbidden" in out.lower()
    code, out = as_token(account, "get", "secrets")
    assert code != 0 and "forbidden" in out.lower()
    code, out = as_token(
        account, "patch", "configmap", peer, "--type", "merge", "-p", '{"data":{"x":"y"}}'
    )
    assert code != 0 and "forbidden" in out.lower()


def test_restricted_pod_security_is_enforced_where_sessions_run(
    running_sessions: tuple[str, str],
) -> None:
    labels = json.loads(kubectl("get", "namespace", NS, "-o", "json").stdout)["metadata"]["labels"]
    assert labels.get("pod-security.kubernetes.io/enforce") == "restricted"
    # Allowed by `baseline`, refused by `restricted`: no runAsNonRoot, no seccomp profile,
    # capabilities not dropped, privilege escalation not disabled.
    loose = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": new_name("loose"), "namespace": NS},
        "spec": {"containers": [{"name": "c", "image": "rebound-peer:0.1.0"}]},
    }
    refused = kubectl("apply", "-f", "-", check=False, stdin=json.dumps(loose))
    assert refused.returncode != 0
    assert 'violates PodSecurity "restricted' in refused.stderr
    peers = kubectl(
        "-n", NS, "get", "pods", "-l", f"rebound.dev/session={running_sessions[0]}", "-o", "name"
    ).stdout.split()
    assert len(peers) == 2  # the operator's peer pods were admitted


REACH_API_SERVER = (
    "import os, socket, sys, time\n"
    # A policy engine may program a new pod's rules only once the API server shows its IP
    # (kube-network-policies on kind does): try once that has surely happened.
    "time.sleep(5)\n"
    "env = os.environ\n"
    "address = (env['KUBERNETES_SERVICE_HOST'], int(env['KUBERNETES_SERVICE_PORT']))\n"
    "try:\n"
    "    socket.create_connection(address, timeout=5).close()\n"
    "except OSError as exc:\n"
    "    sys.exit(f'cannot reach {address}: {exc}')\n"
)


def finished_phase(pod: str, timeout: float) -> str:
    """The pod's phase once it is Succeeded or Failed (AssertionError after `timeout` s)."""
    deadline = time.monotonic() + timeout
    while True:
        phase = kubectl("-n", NS, "get", "pod", pod, "-o", "jsonpath={.status.phase}").stdout
        if phase in ("Succeeded", "Failed"):
            return phase
        assert time.monotonic() < deadline, f"pod {pod} still {phase or 'unknown'}"
        time.sleep(1)


def probe_pod(name: str, labels: dict[str, str]) -> dict[str, object]:
    """A restricted pod of the peer image that exits 0 if it can open a TCP connection to
    the API server, 1 if not."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": NS, "labels": labels},
        "spec": {
            "restartPolicy": "Never",
            "automountServiceAccountToken": False,
            "securityContext": {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [
                {
                    "name": "probe",
                    "image": "rebound-peer:0.1.0",
                    "imagePullPolicy": "IfNotPresent",
                    "command": ["python", "-c", REACH_API_SERVER],
                    "securityContext": {
                        "allowPrivilegeEscalation": False,
                        "capabilities": {"drop": ["ALL"]},
                    },
                }
            ],
        },
    }


def test_network_policies_are_enforced_for_peers() -> None:
    """The default-deny policy (manifests/base/networkpolicy.yaml) selects every peer-labelled
    pod: such a pod that no session's policy lets out cannot reach even the API server, while
    the same pod unlabelled can."""
    peer_labels = {"app.kubernetes.io/name": "rebound", "app.kubernetes.io/component": "peer"}
    free, denied = new_name("free"), new_name("denied")
    for name, labels in ((free, {}), (denied, peer_labels)):
        created = kubectl(
            "apply", "-f", "-", check=False, stdin=json.dumps(probe_pod(name, labels))
        )
        assert created.returncode == 0, created.stderr
    try:
        phase_of = {name: finished_phase(name, timeout=90) for name in (free, denied)}
        logs = {name: kubectl("-n", NS, "logs", name, check=False).stdout for name in phase_of}
        assert phase_of[free] == "Succeeded", logs[free]
        assert phase_of[denied] == "Failed", logs[denied]
        assert "cannot reach" in logs[denied]
    finally:
        kubectl("-n", NS, "delete", "pod", free, denied, "--wait=false", check=False)


def test_server_side_apply_twice_then_diff_shows_nothing() -> None:
    overlay = REPO / "manifests" / "overlays" / ("local" if process_node() else "kind")
    for _ in range(2):
        applied = kubectl(
            "apply",
            "--server-side",
            "--force-conflicts",
            "--field-manager=rebound-gitops",
            "-k",
            str(overlay),
            check=False,
        )
        assert applied.returncode == 0, applied.stderr
    diff = kubectl(
        "diff", "--server-side", "--field-manager=rebound-gitops", "-k", str(overlay), check=False
    )
    assert diff.returncode == 0 and not diff.stdout.strip(), diff.stdout + diff.stderr


def test_a_namespaced_install_without_any_cluster_role_runs_a_session(
    sessions: list[str], tmp_path: Path
) -> None:
    """manifests/overlays/namespaced: a Role in rebound-sessions, no ClusterRole at all, with
    the images built here (components/local-images). Runs last: it swaps the install and puts
    the original back."""
    overlays = REPO / "manifests" / "overlays"
    namespaced = tmp_path / "namespaced-local-images"
    namespaced.mkdir()
    manifests = Path(os.path.relpath(REPO / "manifests", namespaced))  # kustomize: relative only
    (namespaced / "kustomization.yaml").write_text(
        "apiVersion: kustomize.config.k8s.io/v1beta1\n"
        "kind: Kustomization\n"
        f"resources: [{manifests / 'overlays' / 'namespaced'}]\n"
        f"components: [{manifests / 'components' / 'local-images'}]\n"
    )
    operator_ns = ["-n", "rebound-system"]
    try:
        kubectl(
            "delete",
            "clusterrolebinding",
            "rebound-operator",
            "clusterrole",
            "rebound-operator",
            check=False,
        )
        kubectl("apply", "-k", str(namespaced))
        kubectl(*operator_ns, "rollout", "restart", "deployment/rebound-operator")
        kubectl(
            *operator_ns,
            "rollout",
            "status",
            "deployment/rebound-operator",
            "--timeout=180s",
            timeout=200,
        )
        bindings = kubectl("get", "clusterrolebindings", "-o", "name").stdout
        assert "rebound-operator" not in bindings
        assert not can_i_operator("list", "pods", "default")
        assert can_i_operator("create", "pods", NS)
        name = new_name("scoped")
        sessions.append(name)
        assert apply(session_yaml(name, fitted("{frames: 90}")[0])).returncode == 0
        phase_is(name, "Succeeded", 240)
    finally:
        kubectl("apply", "-k", str(overlays / ("local" if process_node() else "kind")))
        kubectl(*operator_ns, "rollout", "restart", "deployment/rebound-operator")
        kubectl(
            *operator_ns,
            "rollout",
            "status",
            "deployment/rebound-operator",
            "--timeout=180s",
            timeout=200,
        )


def can_i_operator(verb: str, resource: str, namespace: str) -> bool:
    """What the operator's ServiceAccount may do, asked of the API server."""
    result = kubectl(
        "auth",
        "can-i",
        verb,
        resource,
        "-n",
        namespace,
        "--as=system:serviceaccount:rebound-system:rebound-operator",
        check=False,
    )
    return result.stdout.strip() == "yes"
