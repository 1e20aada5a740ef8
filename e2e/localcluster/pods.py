"""One pod on the process node, from scheduling to its final delete (`PodWorker`).

Lifecycle, as a kubelet's: ContainerCreating (image, volumes, env: ErrImagePull,
CreateContainerConfigError when they fail) -> a network namespace and address -> the
container runs (via `localcluster.sandbox`) -> it exits (restartPolicy decides: Never ends the
pod Succeeded/Failed; Always/OnFailure restart with the kubelet's back-off, 10 s doubling to
5 min, as CrashLoopBackOff). Deletion: SIGTERM to the container's process group, the grace
period, SIGKILL, then the final delete with grace 0. `activeDeadlineSeconds` (from startTime)
kills the container and fails the pod with reason DeadlineExceeded. When the container's main
process exits, whatever it left in its process group is killed, as a container runtime does.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import shutil
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from kubernetes.client.exceptions import ApiException
from urllib3.exceptions import HTTPError

from localcluster import network
from localcluster.images import ImageCatalog
from localcluster.layout import Layout, NodeLayout
from localcluster.nodeapi import NodeApi
from localcluster.podspec import (
    ConfigError,
    ContainerPlan,
    ContainerView,
    ServiceEndpoint,
    Unsupported,
    exit_code_of,
    now_stamp,
    plan,
    pod_status,
    running,
    terminated,
    waiting,
)
from localcluster.volumes import materialise

log = logging.getLogger("localcluster.node")

CONFIG_RETRY_S = 5.0
TRANSIENT_RETRY_S = 1.0
NETNS_ATTEMPTS = 3
BACKOFF_INITIAL_S = 10.0
BACKOFF_MAX_S = 300.0
DEFAULT_GRACE_S = 30


class AddressPool(Protocol):
    """Hands out pod addresses."""

    def take(self) -> str: ...

    def give_back(self, address: str) -> None: ...


@dataclass
class NodeContext:
    """What every pod worker shares: the layout, API access, images and addresses."""

    layout: Layout
    node: NodeLayout
    """The node these pods run on (its address, bridge and pod range)."""
    api: NodeApi
    images: ImageCatalog
    addresses: AddressPool
    service: ServiceEndpoint
    python: str = sys.executable
    reveal: dict[str, list[str]] = field(default_factory=dict)
    """Closed folders the pods' interpreter lives in (see `sandbox.reveal_plan`)."""
    keep: list[str] = field(default_factory=list)
    """Paths every pod must see whatever it mounts (see `sandbox.shadowed_paths`)."""
    log_files: dict[tuple[str, str, str], list[Path]] = field(default_factory=dict)
    """(namespace, pod, container) -> log files, oldest first (for `kubectl logs`)."""
    network_ready: Callable[[dict[str, Any], str, str], None] | None = None
    """Called with (pod, netns, address) once a pod's network exists, before its container
    starts (NetworkPolicy enforcement); an exception fails the start like a CNI error."""


def _meta(pod: dict[str, Any]) -> dict[str, Any]:
    return dict(pod.get("metadata") or {})


class PodWorker:
    """Runs one pod (one uid) and reports its status until it is deleted."""

    def __init__(self, ctx: NodeContext, pod: dict[str, Any]) -> None:
        self.ctx = ctx
        self.pod = pod
        meta = _meta(pod)
        self.namespace, self.name, self.uid = meta["namespace"], meta["name"], meta["uid"]
        self.changed = asyncio.Event()
        self.folder = ctx.layout.pods / f"{self.namespace}_{self.name}_{self.uid}"
        self.address: str | None = None
        self.netns = f"{ctx.layout.pod_netns_prefix}{self.uid[:18]}"
        self.start_time = str((pod.get("status") or {}).get("startTime") or now_stamp())
        container = ((pod.get("spec") or {}).get("containers") or [{}])[0]
        self.view = ContainerView(
            name=str(container.get("name", "")),
            image=str(container.get("image", "")),
            state=waiting("ContainerCreating"),
        )
        self.process: asyncio.subprocess.Process | None = None

    # ---- what the API says ------------------------------------------------------------------

    def update(self, pod: dict[str, Any]) -> None:
        """A newer version of the pod arrived from the watch."""
        self.pod = pod
        self.changed.set()

    @property
    def deleting(self) -> bool:
        """True once the pod has a deletionTimestamp."""
        return bool(_meta(self.pod).get("deletionTimestamp"))

    def _grace_s(self) -> float:
        meta, spec = _meta(self.pod), self.pod.get("spec") or {}
        grace = meta.get("deletionGracePeriodSeconds")
        if grace is None:
            grace = spec.get("terminationGracePeriodSeconds", DEFAULT_GRACE_S)
        return float(grace)

    def _deadline(self) -> float | None:
        seconds = (self.pod.get("spec") or {}).get("activeDeadlineSeconds")
        return None if seconds is None else self._started_monotonic + float(seconds)

    async def _wait_change(self, timeout: float | None) -> None:
        self.changed.clear()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await self.changed.wait()

    # ---- status -----------------------------------------------------------------------------

    async def _report(
        self, phase: str, reason: str | None = None, message: str | None = None
    ) -> None:
        status = pod_status(
            phase,
            self.view,
            host_ip=self.ctx.node.address,
            pod_ip=self.address,
            start_time=self.start_time,
            sandbox_ready=self.address is not None,
            reason=reason,
            message=message,
        )
        try:
            await asyncio.to_thread(
                self.ctx.api.patch_pod_status, self.namespace, self.name, self.uid, status
            )
        except Exception as exc:  # the pod may be gone; the worker goes on regardless
            log.warning("%s/%s: status update failed: %s", self.namespace, self.name, exc)

    def _set(self, state: dict[str, Any], **changes: Any) -> None:
        self.view = ContainerView(
            name=self.view.name,
            image=self.view.image,
            state=state,
            restart_count=changes.get("restart_count", self.view.restart_count),
            last_state=changes.get("last_state", self.view.last_state),
            container_id=changes.get("container_id", self.view.container_id),
        )

    # ---- the lifecycle ----------------------------------------------------------------------

    async def run(self) -> None:
        """Run the pod to its end; always clean up its namespace and volumes."""
        self._started_monotonic = time.monotonic()
        try:
            await self._run()
        except Exception:
            log.exception("%s/%s: process node error", self.namespace, self.name)
            await self._report("Failed", "NodeError", "the process node failed to run this pod")
            await self._until_deleted()
        finally:
            await self._cleanup()

    async def _run(self) -> None:
        if self.deleting:
            await self._final_delete()
            return
        await self._report("Pending")
        try:
            container_plan = await self._prepare()
        except Unsupported as exc:
            self._set(waiting("Unsupported", str(exc)))
            await self._report("Failed", "Unsupported", str(exc))
            await self._until_deleted()
            return
        if container_plan is None:  # deleted while waiting for its image or config
            await self._final_delete()
            return
        self.address = self.ctx.addresses.take()
        for attempt in range(NETNS_ATTEMPTS):
            try:
                segment = network.Segment(
                    self.ctx.node.bridge, self.ctx.node.address, self.ctx.node.prefix_length
                )
                await asyncio.to_thread(network.create_netns, self.netns, self.address, segment)
                break
            except network.NetworkError as exc:
                log.warning("%s/%s: network namespace: %s", self.namespace, self.name, exc)
                if attempt == NETNS_ATTEMPTS - 1:
                    raise
                await asyncio.sleep(TRANSIENT_RETRY_S)
        if self.ctx.network_ready is not None:
            await asyncio.to_thread(self.ctx.network_ready, self.pod, self.netns, self.address)
        await self._run_container(container_plan)

    async def _prepare(self) -> ContainerPlan | None:
        image = self.view.image
        config = self.ctx.images.resolve(image)
        if config is None:
            why = (
                f'failed to pull image "{image}": not a Rebound image '
                "(the process node pulls nothing)"
            )
            self._set(waiting("ErrImagePull", why))
            await self._report("Pending")
            await self._wait_change(2.0)
            self._set(waiting("ImagePullBackOff", f'Back-off pulling image "{image}": {why}'))
            await self._report("Pending")
            await self._until_deleted()
            return None
        while not self.deleting:
            try:
                return await asyncio.to_thread(self._materialise, config)
            except ConfigError as exc:
                self._set(waiting("CreateContainerConfigError", str(exc)))
                await self._report("Pending")
                await self._wait_change(CONFIG_RETRY_S)
            except (ApiException, HTTPError, OSError) as exc:
                # A kubelet keeps the pod ContainerCreating and retries (FailedMount).
                log.warning("%s/%s: preparing volumes: %s", self.namespace, self.name, exc)
                self._set(waiting("ContainerCreating", f"preparing volumes: {exc}"[:200]))
                await self._report("Pending")
                await self._wait_change(TRANSIENT_RETRY_S)
        return None

    def _materialise(self, config: Any) -> ContainerPlan:
        """Blocking: env and volumes (API reads, token requests, files)."""
        container_plan = plan(self.pod, config, self.ctx.api.lookup, self.ctx.service)
        volumes = {str(v["name"]): v for v in (self.pod.get("spec") or {}).get("volumes") or []}
        for name, _, _ in container_plan.mounts:
            if name not in volumes:
                raise ConfigError(f"volume {name!r} is mounted but not defined")
        for name, volume in volumes.items():
            materialise(
                volume,
                self.folder / "volumes" / name,
                self.pod,
                self.ctx.api.lookup,
                self.ctx.api.request_token,
            )
        return container_plan

    def _sandbox_spec(self, container_plan: ContainerPlan) -> Path:
        spec = {
            "netns": str(network.netns_path(self.netns)),
            "hostname": self.name,
            "reveal": self.ctx.reveal,
            "keep": self.ctx.keep,
            "mounts": [
                [str(self.folder / "volumes" / name), path, read_only]
                for name, path, read_only in container_plan.mounts
            ],
            "uid": container_plan.uid,
            "gid": container_plan.gid,
            "groups": container_plan.groups,
            "no_new_privs": container_plan.no_new_privs,
            "workdir": container_plan.workdir,
            "argv": container_plan.argv,
            "env": container_plan.env,
        }
        path = self.folder / "sandbox.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # holds Secret values
        with os.fdopen(fd, "w") as handle:
            json.dump(spec, handle)
        return path

    def _log_file(self) -> Path:
        key = (self.namespace, self.name, self.view.name)
        path = (
            self.ctx.layout.pods
            / "logs"
            / (
                f"{self.namespace}_{self.name}_{self.uid[:8]}_{self.view.name}_{self.view.restart_count}.log"
            )
        )
        path.parent.mkdir(parents=True, exist_ok=True)
        files = self.ctx.log_files.setdefault(key, [])
        if self.view.restart_count == 0:
            files.clear()
        files.append(path)
        return path

    async def _spawn(self, container_plan: ContainerPlan) -> asyncio.subprocess.Process:
        spec = self._sandbox_spec(container_plan)
        with self._log_file().open("ab") as sink:
            return await asyncio.create_subprocess_exec(
                self.ctx.python,
                "-m",
                "localcluster.sandbox",
                str(spec),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=sink,
                stderr=sink,
                start_new_session=True,
            )

    async def _run_container(self, container_plan: ContainerPlan) -> None:
        policy = str((self.pod.get("spec") or {}).get("restartPolicy") or "Always")
        backoff = BACKOFF_INITIAL_S
        while True:
            process = await self._spawn(container_plan)
            self.process = process
            started = now_stamp()
            self._set(running(started), container_id=f"process://{process.pid}")
            await self._report("Running")
            outcome = await self._wait_exit_or_stop(process)
            if outcome == "deleted":
                await self._stop(process, self._grace_s())
                self._set(terminated(exit_code_of(process.returncode or 0), started, now_stamp()))
                await self._report("Failed" if process.returncode else "Succeeded")
                await self._final_delete()
                return
            if outcome == "deadline":
                grace = float((self.pod.get("spec") or {}).get("terminationGracePeriodSeconds", 30))
                await self._stop(process, grace)
                code = exit_code_of(process.returncode or 0)
                self._set(terminated(code, started, now_stamp()))
                await self._report(
                    "Failed",
                    "DeadlineExceeded",
                    "Pod was active on the node longer than the specified deadline",
                )
                await self._until_deleted()
                return
            code = exit_code_of(process.returncode or 0)
            self._kill_group(process.pid)
            ended = terminated(code, started, now_stamp())
            if policy == "Never" or (policy == "OnFailure" and code == 0):
                self._set(ended)
                await self._report("Succeeded" if code == 0 else "Failed")
                await self._until_deleted()
                return
            self._set(
                waiting("CrashLoopBackOff", f"back-off {backoff:g}s restarting failed container"),
                restart_count=self.view.restart_count + 1,
                last_state=ended,
            )
            await self._report("Running")
            resume = time.monotonic() + backoff
            while time.monotonic() < resume and not self.deleting:
                await self._wait_change(resume - time.monotonic())
            if self.deleting:
                await self._final_delete()
                return
            backoff = min(backoff * 2, BACKOFF_MAX_S)

    async def _wait_exit_or_stop(self, process: asyncio.subprocess.Process) -> str:
        exited = asyncio.ensure_future(process.wait())
        try:
            while not exited.done():
                if self.deleting:
                    return "deleted"
                deadline = self._deadline()
                if deadline is not None and time.monotonic() >= deadline:
                    return "deadline"
                timeout = None if deadline is None else max(deadline - time.monotonic(), 0.0)
                self.changed.clear()
                changed = asyncio.ensure_future(self.changed.wait())
                await asyncio.wait(
                    {exited, changed}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
                )
                changed.cancel()
            return "exited"
        finally:
            if not exited.done():
                exited.cancel()

    @staticmethod
    def _kill_group(pid: int, sig: int = signal.SIGKILL) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, sig)

    async def _stop(self, process: asyncio.subprocess.Process, grace: float) -> None:
        """SIGTERM the container's process group, wait `grace`, then SIGKILL it."""
        self._kill_group(process.pid, signal.SIGTERM)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(max(grace, 0.0)):
                await process.wait()
        self._kill_group(process.pid, signal.SIGKILL)
        await process.wait()

    async def _until_deleted(self) -> None:
        while not self.deleting:
            await self._wait_change(None)
        await self._final_delete()

    async def _final_delete(self) -> None:
        with contextlib.suppress(Exception):
            await asyncio.to_thread(self.ctx.api.delete_pod, self.namespace, self.name, self.uid)

    async def shutdown(self) -> None:
        """The node is stopping: stop the container now (no API calls)."""
        process = self.process
        if process is not None and process.returncode is None:
            await self._stop(process, 2.0)

    async def _cleanup(self) -> None:
        process = self.process
        if process is not None:
            self._kill_group(process.pid)
        if self.address is not None:
            await asyncio.to_thread(network.delete_netns, self.netns)
            self.ctx.addresses.give_back(self.address)
            self.address = None
        await asyncio.to_thread(shutil.rmtree, self.folder, True)


WorkerFactory = Callable[[NodeContext, dict[str, Any]], PodWorker]
