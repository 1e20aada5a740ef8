"""A PodWorker runs a real process in a real sandbox (netns, mounts, uid) and reports what a
kubelet would. The API is faked (recorded); everything else is real. Needs root and `ip`."""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest

from localcluster import network
from localcluster.images import ImageCatalog
from localcluster.layout import REPO, Layout
from localcluster.node import Addresses, base_prefix, runtime_paths
from localcluster.pods import NodeContext, PodWorker
from localcluster.podspec import ServiceEndpoint
from localcluster.sandbox import reveal_plan

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("ip") is None,
    reason="the process node's sandbox needs root and iproute2",
)
VENV = Path(sys.prefix)


class FakeApi:
    """Records what the worker writes; serves one ConfigMap and fake tokens."""

    def __init__(self) -> None:
        self.statuses: list[dict[str, Any]] = []
        self.deleted: list[str] = []

    def patch_pod_status(self, namespace: str, name: str, uid: str, status: dict[str, Any]) -> None:
        self.statuses.append(status)

    def delete_pod(self, namespace: str, name: str, uid: str) -> None:
        self.deleted.append(uid)

    def lookup(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        return {"data": {"greeting": "hello"}} if (kind, name) == ("ConfigMap", "cfg") else None

    def request_token(self, ns: str, sa: str, aud: list[str], exp: int, pod: str, uid: str) -> str:
        return f"token-for-{sa}-bound-to-{pod}"


@pytest.fixture
def ctx(tmp_path: Path) -> Any:
    layout = Layout(
        state=tmp_path, bridge="rbtest0", network="10.251.0.0/22", pod_netns_prefix="rbt-"
    )
    node = layout.nodes[0]
    network.ensure_bridge(network.Segment(node.bridge, node.address, node.prefix_length))
    api = FakeApi()
    context = NodeContext(
        layout=layout,
        node=node,
        api=api,  # type: ignore[arg-type]
        images=ImageCatalog(VENV),
        addresses=Addresses(node),
        service=ServiceEndpoint("10.251.0.2", 6443),
        reveal=reveal_plan([base_prefix(VENV), REPO]),
        keep=runtime_paths(VENV),
    )
    yield context
    for name in network.list_netns("rbt-"):
        network.delete_netns(name)
    network.remove_bridges(layout)


def a_pod(script: str, uid: str, **spec: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": f"pod-{uid}", "namespace": "ns", "uid": uid},
        "spec": {
            "restartPolicy": "Never",
            "serviceAccountName": "sa",
            "terminationGracePeriodSeconds": 5,
            "securityContext": {"runAsNonRoot": True},
            "containers": [
                {
                    "name": "main",
                    "image": "rebound-peer:0.1.0",
                    "command": ["python", "-c", script],
                    "env": [
                        {
                            "name": "GREETING",
                            "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "greeting"}},
                        }
                    ],
                    "volumeMounts": [
                        {"name": "tmp", "mountPath": "/tmp"},
                        {
                            "name": "token",
                            "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount",
                            "readOnly": True,
                        },
                    ],
                }
            ],
            "volumes": [
                {"name": "tmp", "emptyDir": {}},
                {
                    "name": "token",
                    "projected": {
                        "sources": [
                            {"serviceAccountToken": {"path": "token", "expirationSeconds": 3607}}
                        ]
                    },
                },
            ],
            **spec,
        },
    }


async def run_to_end(ctx: NodeContext, pod: dict[str, Any]) -> None:
    """Run the pod until it reports Succeeded/Failed, then delete it as the API would."""
    worker = PodWorker(ctx, pod)
    task = asyncio.ensure_future(worker.run())
    api: FakeApi = ctx.api  # type: ignore[assignment]
    while not (api.statuses and api.statuses[-1]["phase"] in ("Succeeded", "Failed")):
        if task.done():
            task.result()
            raise AssertionError("the worker ended without a terminal phase")
        await asyncio.sleep(0.05)
    worker.update({**pod, "metadata": {**pod["metadata"], "deletionTimestamp": "now"}})
    await task


def last_state(api: FakeApi) -> tuple[str, dict[str, Any]]:
    status = api.statuses[-1]
    return status["phase"], status["containerStatuses"][0]["state"]


def log_text(ctx: NodeContext, pod: dict[str, Any]) -> str:
    key = ("ns", pod["metadata"]["name"], "main")
    return ctx.log_files[key][-1].read_text()


async def test_a_container_runs_as_its_user_in_its_own_sandbox(ctx: NodeContext) -> None:
    script = (
        "import os, socket; "
        "print(os.getuid(), os.getgid(), socket.gethostname(), os.environ['GREETING']); "
        "print(open('/var/run/secrets/kubernetes.io/serviceaccount/token').read()); "
        "open('/tmp/scratch', 'w').write('x'); print(os.getcwd())"
    )
    pod = a_pod(script, "u1")
    await asyncio.wait_for(run_to_end(ctx, pod), 60)
    phase, state = last_state(ctx.api)  # type: ignore[arg-type]
    output = log_text(ctx, pod)
    assert phase == "Succeeded", output
    assert state["terminated"]["exitCode"] == 0
    assert "10001 10001 pod-u1 hello" in output
    assert "token-for-sa-bound-to-pod-u1" in output
    statuses = ctx.api.statuses  # type: ignore[attr-defined]
    assert any(s["phase"] == "Running" and s.get("podIP") for s in statuses)


async def test_a_failing_container_fails_the_pod_with_its_exit_code(ctx: NodeContext) -> None:
    await asyncio.wait_for(run_to_end(ctx, a_pod("raise SystemExit(3)", "u2")), 60)
    phase, state = last_state(ctx.api)  # type: ignore[arg-type]
    assert phase == "Failed"
    assert state["terminated"]["exitCode"] == 3 and state["terminated"]["reason"] == "Error"


async def test_deletion_sends_sigterm_then_deletes_with_grace_zero(ctx: NodeContext) -> None:
    script = (
        "import signal, sys, time\n"
        "def bye(*_):\n    print('got SIGTERM', flush=True)\n    sys.exit(0)\n"
        "signal.signal(signal.SIGTERM, bye)\n"
        "print('up', flush=True)\n"
        "time.sleep(60)\n"
    )
    pod = a_pod(script, "u3")
    worker = PodWorker(ctx, pod)
    task = asyncio.ensure_future(worker.run())
    for _ in range(200):
        if ctx.api.statuses and ctx.api.statuses[-1]["phase"] == "Running":  # type: ignore[attr-defined]
            break
        await asyncio.sleep(0.05)
    await asyncio.sleep(1.0)
    deleted = {
        **pod,
        "metadata": {
            **pod["metadata"],
            "deletionTimestamp": "now",
            "deletionGracePeriodSeconds": 5,
        },
    }
    worker.update(deleted)
    await asyncio.wait_for(task, 30)
    assert "got SIGTERM" in log_text(ctx, pod)
    assert ctx.api.deleted == ["u3"]  # type: ignore[attr-defined]
    assert not network.list_netns("rbt-")


async def test_active_deadline_fails_the_pod(ctx: NodeContext) -> None:
    pod = a_pod("import time; time.sleep(60)", "u4", activeDeadlineSeconds=1)
    await asyncio.wait_for(run_to_end(ctx, pod), 30)
    status = ctx.api.statuses[-1]  # type: ignore[attr-defined]
    assert status["phase"] == "Failed" and status["reason"] == "DeadlineExceeded"


async def test_children_left_behind_die_with_the_container(ctx: NodeContext) -> None:
    script = (
        "import subprocess, sys; "
        "p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']); "
        "print('child', p.pid, flush=True)"
    )
    pod = a_pod(script, "u5")
    await asyncio.wait_for(run_to_end(ctx, pod), 60)
    child = int(log_text(ctx, pod).split("child", 1)[1].split()[0])
    for _ in range(50):
        try:
            os.kill(child, 0)
        except ProcessLookupError:
            return
        await asyncio.sleep(0.1)
    pytest.fail(f"the container's child {child} outlived it")


async def test_an_unknown_image_cannot_be_pulled(ctx: NodeContext) -> None:
    pod = a_pod("pass", "u6")
    pod["spec"]["containers"][0]["image"] = "nginx:latest"
    worker = PodWorker(ctx, pod)
    task = asyncio.ensure_future(worker.run())
    for _ in range(100):
        reasons = [
            s["containerStatuses"][0]["state"].get("waiting", {}).get("reason")
            for s in ctx.api.statuses
        ]  # type: ignore[attr-defined]
        if "ImagePullBackOff" in reasons:
            break
        await asyncio.sleep(0.1)
    assert "ErrImagePull" in reasons and "ImagePullBackOff" in reasons
    worker.update({**pod, "metadata": {**pod["metadata"], "deletionTimestamp": "now"}})
    await asyncio.wait_for(task, 10)


async def test_the_repository_stays_visible_under_a_volume_mounted_over_it(
    ctx: NodeContext,
) -> None:
    # CI may clone the project under /tmp, where every pod mounts an emptyDir.
    pod = a_pod("import sys; print('ran', sys.prefix)", "u7")
    container = pod["spec"]["containers"][0]
    container["volumeMounts"].append({"name": "cover", "mountPath": str(REPO.parent)})
    pod["spec"]["volumes"].append({"name": "cover", "emptyDir": {}})
    await asyncio.wait_for(run_to_end(ctx, pod), 60)
    phase, _ = last_state(ctx.api)  # type: ignore[arg-type]
    assert phase == "Succeeded", log_text(ctx, pod)
    assert "ran" in log_text(ctx, pod)
