"""The process node: a Node that runs the pods the real scheduler binds to it as local
processes (test infrastructure: it replaces the container runtime, nothing else).

`python -m localcluster.node --node NAME` (one per node, started by `python -m localcluster
up`) registers the Node (its pod CIDR, InternalIP and kubelet port are its own),
renews its Lease every 10 s, watches the pods bound to it and runs each in a `PodWorker`,
and serves container logs to `kubectl logs` on the kubelet port (HTTPS, client certificate
signed by the cluster CA required, as the API server presents one).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import platform
import signal
import ssl
import sys
import threading
from pathlib import Path
from typing import Any

from aiohttp import web
from kubernetes.client.exceptions import ApiException

from localcluster import network
from localcluster.build import KUBERNETES_VERSION
from localcluster.images import ImageCatalog
from localcluster.layout import NODE_NAME, REPO, Layout, NodeLayout
from localcluster.nodeapi import NodeApi
from localcluster.pods import NodeContext, PodWorker
from localcluster.podspec import ServiceEndpoint, now_stamp
from localcluster.policies import LocalPod, PolicyEnforcer
from localcluster.sandbox import reveal_plan

log = logging.getLogger("localcluster.node")

LEASE_RENEW_S = 10.0
STATUS_REPORT_S = 60.0
WATCH_TIMEOUT_S = 300
DEFAULT_ALLOCATABLE = {"cpu": "64", "memory": "128Gi", "ephemeral-storage": "100Gi"}
"""More than this machine has, on purpose: the tests overcommit (documented in README). The
pod count is what the node's address range holds."""


def base_prefix(venv: Path) -> Path:
    """The Python installation a virtualenv was made from (`home` in pyvenv.cfg, minus bin)."""
    for line in (venv / "pyvenv.cfg").read_text().splitlines():
        key, _, value = line.partition("=")
        if key.strip() == "home":
            return Path(value.strip()).parent
    return venv


def runtime_paths(venv: Path) -> list[str]:
    """What every pod runs from: the repository, its virtualenv and the interpreter."""
    return sorted({str(REPO), str(venv.resolve()), str(base_prefix(venv).resolve())})


class Addresses:
    """Pod addresses from the node's range, lowest free first."""

    def __init__(self, node: NodeLayout) -> None:
        self.node = node
        self._free: list[int] = []
        self._next = 0
        self._by_address: dict[str, int] = {}

    def take(self) -> str:
        """A free address."""
        if self._free:
            index = self._free.pop(0)
        else:
            index, self._next = self._next, self._next + 1
        address = self.node.pod_ip(index)
        self._by_address[address] = index
        return address

    def give_back(self, address: str) -> None:
        """Return an address to the pool."""
        index = self._by_address.pop(address, None)
        if index is not None:
            self._free.append(index)
            self._free.sort()


def node_manifest(layout: Layout, node: NodeLayout, allocatable: dict[str, str]) -> dict[str, Any]:
    """The Node object this node registers: Ready, its address, pod range, capacity and
    versions."""
    allocatable = {**allocatable, "pods": str(node.max_pods)}
    now = now_stamp()

    def condition(kind: str, status: str, reason: str, message: str) -> dict[str, str]:
        return {
            "type": kind,
            "status": status,
            "reason": reason,
            "message": message,
            "lastHeartbeatTime": now,
            "lastTransitionTime": now,
        }

    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": node.name,
            "labels": {
                "kubernetes.io/hostname": node.name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
                "rebound.dev/process-node": "true",
            },
        },
        "spec": {"podCIDR": node.cidr, "podCIDRs": [node.cidr]},
        "status": {
            "capacity": allocatable,
            "allocatable": allocatable,
            "addresses": [
                {"type": "InternalIP", "address": node.address},
                {"type": "Hostname", "address": node.name},
            ],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": layout.kubelet_port}},
            "nodeInfo": {
                "machineID": f"rebound-{node.component}",
                "systemUUID": f"rebound-{node.component}",
                "bootID": str(os.getpid()),
                "kernelVersion": platform.release(),
                "osImage": "process node (pods run as local processes)",
                "containerRuntimeVersion": "process://localcluster",
                "kubeletVersion": KUBERNETES_VERSION,
                "kubeProxyVersion": "",
                "operatingSystem": "linux",
                "architecture": "amd64",
            },
            "conditions": [
                condition("MemoryPressure", "False", "KubeletHasSufficientMemory", "ok"),
                condition("DiskPressure", "False", "KubeletHasNoDiskPressure", "ok"),
                condition("PIDPressure", "False", "KubeletHasSufficientPID", "ok"),
                condition("Ready", "True", "KubeletReady", "process node is posting ready status"),
            ],
        },
    }


class ProcessNode:
    """Registration, heartbeat, the pod watch and one worker per pod."""

    def __init__(self, layout: Layout, node: NodeLayout, venv: Path) -> None:
        self.layout = layout
        self.node = node
        self.api = NodeApi(str(layout.component_kubeconfig(node.component)), node.name)
        self.ctx = NodeContext(
            layout=layout,
            node=node,
            api=self.api,
            images=ImageCatalog(venv),
            addresses=Addresses(node),
            service=ServiceEndpoint(layout.api_ip, layout.api_port),
            reveal=reveal_plan([base_prefix(venv), REPO]),
            keep=runtime_paths(venv),
        )
        self.workers: dict[str, PodWorker] = {}
        self.policies = PolicyEnforcer(
            str(layout.kubeconfig), [n.name for n in layout.nodes], self._local_pods
        )
        self.ctx.network_ready = self._network_ready
        self.tasks: set[asyncio.Task[None]] = set()
        self._events: asyncio.Queue[tuple[str, dict[str, Any]]] = asyncio.Queue()
        self._stopping = threading.Event()

    async def run(self, stop: asyncio.Event) -> None:
        """Serve until `stop` is set, then stop every container."""
        manifest = node_manifest(self.layout, self.node, DEFAULT_ALLOCATABLE)
        node = await asyncio.to_thread(self.api.register, manifest)
        node_uid = str(node["metadata"]["uid"])
        loop = asyncio.get_running_loop()
        watcher = threading.Thread(target=self._watch, args=(loop,), name="pod-watch", daemon=True)
        watcher.start()
        enforcer = threading.Thread(target=self.policies.run, name="policies", daemon=True)
        enforcer.start()
        runner = await self._serve_logs()
        background = [
            asyncio.ensure_future(self._heartbeat(node_uid, manifest)),
            asyncio.ensure_future(self._dispatch()),
        ]
        log.info("node %s ready at %s", self.node.name, self.node.address)
        await stop.wait()
        self._stopping.set()
        self.policies.stopping.set()
        for task in background:
            task.cancel()
        await asyncio.gather(*(w.shutdown() for w in list(self.workers.values())))
        await runner.cleanup()

    def _local_pods(self) -> dict[str, tuple[LocalPod, dict[str, Any]]]:
        """Pods with a network namespace on this node (for NetworkPolicy enforcement)."""
        return {
            uid: (LocalPod(uid, worker.netns, worker.address), worker.pod)
            for uid, worker in list(self.workers.items())
            if worker.address is not None and network.netns_path(worker.netns).exists()
        }

    def _network_ready(self, pod: dict[str, Any], netns: str, address: str) -> None:
        uid = str((pod.get("metadata") or {}).get("uid"))
        self.policies.before_start(pod, LocalPod(uid, netns, address))

    async def _heartbeat(self, node_uid: str, manifest: dict[str, Any]) -> None:
        since_status = 0.0
        while True:
            try:
                await asyncio.to_thread(self.api.renew_lease, node_uid)
                since_status += LEASE_RENEW_S
                if since_status >= STATUS_REPORT_S:
                    since_status = 0.0
                    conditions = manifest["status"]["conditions"]
                    for condition in conditions:
                        condition["lastHeartbeatTime"] = now_stamp()
                    await asyncio.to_thread(self.api.patch_node_status, {"conditions": conditions})
            except Exception as exc:
                log.warning("heartbeat failed: %s", exc)
            await asyncio.sleep(LEASE_RENEW_S)

    def _watch(self, loop: asyncio.AbstractEventLoop) -> None:
        """Thread: list + watch pods bound to this node, re-listing on 410 or errors."""
        while not self._stopping.is_set():
            try:
                pods, version = self.api.list_pods()
                for pod in pods:
                    loop.call_soon_threadsafe(self._events.put_nowait, ("SYNC", pod))
                for kind, pod in self.api.watch_pods(version, WATCH_TIMEOUT_S):
                    if self._stopping.is_set():
                        return
                    if kind in ("ADDED", "MODIFIED", "DELETED"):
                        loop.call_soon_threadsafe(self._events.put_nowait, (kind, pod))
            except ApiException as exc:
                log.warning("pod watch: HTTP %s %s; re-listing", exc.status, exc.reason)
                self._stopping.wait(1.0)
            except Exception as exc:
                log.warning("pod watch: %s; re-listing", exc)
                self._stopping.wait(1.0)

    async def _dispatch(self) -> None:
        while True:
            kind, pod = await self._events.get()
            uid = str((pod.get("metadata") or {}).get("uid", ""))
            worker = self.workers.get(uid)
            if worker is not None:
                if kind == "DELETED":
                    # Gone from the API (force-deleted): stop it at once.
                    meta = pod.setdefault("metadata", {})
                    meta.setdefault("deletionTimestamp", now_stamp())
                    meta["deletionGracePeriodSeconds"] = 0
                worker.update(pod)
                continue
            if kind == "DELETED":
                continue
            phase = (pod.get("status") or {}).get("phase")
            deleting = bool((pod.get("metadata") or {}).get("deletionTimestamp"))
            if phase in ("Succeeded", "Failed") and not deleting:
                continue  # ended before this node (re)started: nothing to run
            worker = PodWorker(self.ctx, pod)
            self.workers[uid] = worker
            task = asyncio.ensure_future(self._run_worker(uid, worker))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

    async def _run_worker(self, uid: str, worker: PodWorker) -> None:
        try:
            await worker.run()
        finally:
            self.workers.pop(uid, None)

    # ---- kubectl logs -------------------------------------------------------------------------

    async def _serve_logs(self) -> web.AppRunner:
        app = web.Application()
        app.router.add_get("/containerLogs/{namespace}/{pod}/{container}", self._container_logs)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        pki = self.layout.pki
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(pki / "ca.crt"))
        serving = self.node.component + "-serving"
        context.load_cert_chain(str(pki / f"{serving}.crt"), str(pki / f"{serving}.key"))
        context.verify_mode = ssl.CERT_REQUIRED
        site = web.TCPSite(runner, self.node.address, self.layout.kubelet_port, ssl_context=context)
        await site.start()
        return runner

    async def _container_logs(self, request: web.Request) -> web.StreamResponse:
        key = (
            request.match_info["namespace"],
            request.match_info["pod"],
            request.match_info["container"],
        )
        files = self.ctx.log_files.get(key) or []
        previous = request.query.get("previous") == "true"
        if not files or (previous and len(files) < 2):
            raise web.HTTPNotFound(text=f"no logs for container {key[2]} of pod {key[0]}/{key[1]}")
        path = files[-2] if previous else files[-1]
        text = await asyncio.to_thread(path.read_bytes)
        tail = request.query.get("tailLines")
        if tail and tail.isdigit():
            lines = text.splitlines(keepends=True)
            text = b"".join(lines[-int(tail) :]) if int(tail) else b""
        limit = request.query.get("limitBytes")
        if limit and limit.isdigit():
            text = text[: int(limit)]
        response = web.StreamResponse(headers={"Content-Type": "text/plain"})
        await response.prepare(request)
        await response.write(text)
        if request.query.get("follow") == "true" and not previous:
            await self._follow(path, len(path.read_bytes()), key, response)
        await response.write_eof()
        return response

    async def _follow(
        self, path: Path, offset: int, key: tuple[str, str, str], response: web.StreamResponse
    ) -> None:
        while True:
            with path.open("rb") as handle:
                handle.seek(offset)
                chunk = handle.read()
            if chunk:
                offset += len(chunk)
                await response.write(chunk)
            alive = any(
                w.namespace == key[0]
                and w.name == key[1]
                and w.process is not None
                and w.process.returncode is None
                for w in self.workers.values()
            )
            if not alive and not chunk:
                return
            await asyncio.sleep(0.5)


def main(argv: list[str] | None = None) -> int:
    """`python -m localcluster.node [--node NAME] [--venv PATH]`: run one process node until
    SIGTERM."""
    parser = argparse.ArgumentParser(prog="python -m localcluster.node")
    parser.add_argument("--node", default=NODE_NAME, help="which of the layout's nodes to run")
    parser.add_argument("--venv", type=Path, default=REPO / ".venv", help="the pods' virtualenv")
    args = parser.parse_args(argv)
    layout = Layout.default()
    try:
        node_layout = layout.node(args.node)
    except KeyError:
        parser.error(f"--node {args.node}: not one of {', '.join(n.name for n in layout.nodes)}")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    for noisy in ("kubernetes", "urllib3", "aiohttp.access"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    node = ProcessNode(layout, node_layout, args.venv.resolve())

    async def serve() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await node.run(stop)

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve())
    return 0


if __name__ == "__main__":
    sys.exit(main())
