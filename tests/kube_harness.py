"""A stand-in cluster for tests: kmock's KubernetesEmulator, a fake kubelet and a GC.

No Kubernetes cluster can run here, so the operator and the peers talk to kmock's
`KubernetesEmulator` (an in-memory API server) running in a background thread. It merges
patches naively and validates nothing; the CRD schema is tested separately. This module
adds what a real cluster would do around it:
- `ReboundEmulator` fills metadata the API server would (uid, namespace, creationTimestamp,
  resourceVersion, generation) so owner references and watches behave;
- `FakeKubelet` runs each Pod as a local process (command, args and env from the Pod spec,
  `secretKeyRef` env read from the Secret; `python` is this interpreter) and reports phase,
  start and exit code back, or `CreateContainerConfigError` for a missing Secret or key;
- `GarbageCollector` deletes objects whose owner (by ownerReferences uid) is gone, as the
  Kubernetes garbage collector does (the emulator has none); it can be held back, as a busy
  collector or pods in their grace period would.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime
import itertools
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterator
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import kmock
import yaml
from kmock import KubernetesEmulator, ResourceInfo, Server
from kmock._internal import parsing as _parsing
from kmock._internal import rendering as _rendering
from kubernetes import client
from kubernetes.client.exceptions import ApiException

REPO = Path(__file__).resolve().parents[1]
CRD_PATH = REPO / "crds" / "ballsession.yaml"
SESSIONS = "rebound.dev/v1alpha1/ballsessions"
_versions = itertools.count(1000)


def _parse_path_with_namespaces(path: str) -> Any:
    """kmock 0.8 mis-parses `/api/v1/namespaces[/NAME]` (the Namespace objects themselves) as
    a namespace prefix with nothing after it and fails every such request with a 500, which
    stalls kopf's namespace observer; parse those two forms as the `namespaces` resource."""
    parts = path.strip("/").split("/")
    if parts[:2] == ["api", "v1"] and parts[2:3] == ["namespaces"] and len(parts) <= 4:
        name = parts[3] if len(parts) == 4 else None
        return _parsing.ParsedPath("", "v1", "namespaces", None, name, None)
    return _original_parse_path(path)


_original_parse_path = _parsing.parse_path
_parsing.parse_path = _parse_path_with_namespaces
_rendering.parsing.parse_path = _parse_path_with_namespaces


def now_stamp() -> str:
    """The current time as Kubernetes writes it."""
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class Seen:
    """One request, as `ReboundEmulator.history` remembers it (no body)."""

    action: Any
    resource: Any
    namespace: str | None
    name: str | None
    params: dict[str, str]
    subresource: str | None = None


class ReboundEmulator(KubernetesEmulator):
    """The emulator plus the metadata a real API server fills in on create, and the
    generation bump on spec writes.

    By default resourceVersion is set once and not bumped on updates. kmock's own request
    log is trimmed (it matches each new request by scanning the whole log, so long runs slow
    down quadratically); `history` keeps a light record of every request instead (action,
    resource, namespace, name, query), for tests that assert on what was asked. Subclasses
    that want every write to be a new version (so kopf can tell stale watch events) flip
    `bump_versions`.
    """

    bump_versions = False
    request_log_limit: int | None = 64

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.history: list[Seen] = []

    async def _handle(self, request: kmock.Request) -> Any:
        limit = self.request_log_limit
        if limit is not None and len(self._requests) > limit:
            del self._requests[: len(self._requests) - limit // 2]
        data = request.data
        name = request.name
        if name is None and isinstance(data, dict):
            name = (data.get("metadata") or {}).get("name")
        self.history.append(
            Seen(
                request.action,
                request.resource,
                request.namespace,
                name,
                dict(request.params),
                request.subresource,
            )
        )
        if request.resource is not None and isinstance(data, dict):
            meta = data.setdefault("metadata", {})
            if request.action == kmock.action.CREATE:
                if not meta.get("name") and meta.get("generateName"):
                    meta["name"] = meta["generateName"] + uuid.uuid4().hex[:5]
                meta.setdefault("uid", str(uuid.uuid4()))
                meta.setdefault("creationTimestamp", now_stamp())
                meta.setdefault("generation", 1)
                meta.setdefault("resourceVersion", str(next(_versions)))
                if request.namespace and not meta.get("namespace"):
                    meta["namespace"] = request.namespace
            elif request.action == kmock.action.UPDATE:
                if self.bump_versions:
                    meta["resourceVersion"] = str(next(_versions))
                if "spec" in data and request.subresource is None:
                    generation = self._generation(request)
                    if generation is not None:
                        meta["generation"] = generation + 1
        return await super()._handle(request)

    def _generation(self, request: kmock.Request) -> int | None:
        """The stored generation of the object a spec write goes to (the API server bumps
        it on every spec change; kmock does not)."""
        key = (request.resource, request.namespace, request.name)
        if key not in self._objects or self._objects[key].deleted:
            return None
        stored = self._objects[key]
        generation = (stored.get("metadata") or {}).get("generation")
        return generation if isinstance(generation, int) else None


class Emulator:
    """The emulated API server, served from its own thread and event loop."""

    emulator_class: type[ReboundEmulator] = ReboundEmulator

    def __init__(self, namespace: str = "rebound-test", host: str = "127.0.0.1") -> None:
        self.namespace = namespace
        self.host = host
        """The address it listens on (e.g. a docker network's gateway, for containers)."""
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="kmock", daemon=True)
        self._thread.start()
        if not self._ready.wait(30):
            raise RuntimeError("the emulated API server did not start")
        self.api = self.api_client()
        self._seed()

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self._start())
        self._ready.set()
        self._loop.run_forever()

    async def _start(self) -> None:
        self.kmock = self.emulator_class()
        await self.kmock.__aenter__()
        self._server = Server(self.kmock, host=self.host)
        await self._server.__aenter__()
        self.kmock.resources.load_bundled()
        self.kmock.resources[SESSIONS] = ResourceInfo(
            kind="BallSession",
            namespaced=True,
            verbs={"get", "list", "watch", "create", "update", "patch", "delete"},
            subresources={"status"},
            shortnames={"bs"},
        )

    def _seed(self) -> None:
        crd = yaml.safe_load(CRD_PATH.read_text())
        ext = client.ApiextensionsV1Api(self.api)
        ext.create_custom_resource_definition(crd)
        # kmock cannot parse POST /api/v1/namespaces (a cluster-scoped collection named
        # "namespaces"), so the namespace is put in place directly.
        namespace = {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {"name": self.namespace, "uid": str(uuid.uuid4())},
        }

        async def put() -> None:
            self.kmock.objects["v1/namespaces", None, self.namespace] = namespace

        self.call(put())

    @property
    def url(self) -> str:
        """Base URL of the emulated API server."""
        return str(self.kmock.url).rstrip("/")

    def api_client(self) -> client.ApiClient:
        """A `kubernetes` client pointed at the emulator."""
        configuration = client.Configuration()
        configuration.host = self.url
        return client.ApiClient(configuration)

    def write_kubeconfig(self, path: Path) -> Path:
        """A kubeconfig for subprocesses (peers, operator) pointing at the emulator."""
        path.write_text(
            yaml.safe_dump(
                {
                    "apiVersion": "v1",
                    "kind": "Config",
                    "current-context": "emulator",
                    "clusters": [{"name": "emulator", "cluster": {"server": self.url}}],
                    "users": [{"name": "tester", "user": {"token": "emulated"}}],
                    "contexts": [
                        {
                            "name": "emulator",
                            "context": {
                                "cluster": "emulator",
                                "user": "tester",
                                "namespace": self.namespace,
                            },
                        }
                    ],
                }
            )
        )
        return path

    def call(self, coro: Any) -> Any:
        """Run a coroutine on the emulator's loop and wait for it."""
        future: Future[Any] = asyncio.run_coroutine_threadsafe(coro, self._loop)
        return future.result(30)

    def objects(self, resource: str) -> list[dict[str, Any]]:
        """Live (not deleted) objects of a resource, e.g. 'v1/pods'."""

        async def snapshot() -> list[dict[str, Any]]:
            found = []
            for (res, _, _), obj in list(self.kmock.objects.items()):
                if str(res) == str(kmock.resource(resource)) and not obj.deleted:
                    found.append(dict(obj.raw))
            return found

        return list(self.call(snapshot()))

    def all_objects(self) -> list[tuple[kmock.resource, dict[str, Any]]]:
        """(resource, object) for every live object."""

        async def snapshot() -> list[tuple[kmock.resource, dict[str, Any]]]:
            return [
                (res, dict(obj.raw))
                for (res, _, _), obj in list(self.kmock.objects.items())
                if not obj.deleted
            ]

        return list(self.call(snapshot()))

    def close(self) -> None:
        """Stop the server and its thread."""

        async def stop() -> None:
            await self._server.__aexit__(None, None, None)
            await self.kmock.__aexit__(None, None, None)

        with contextlib.suppress(Exception):
            self.call(stop())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)


class ConfigError(Exception):
    """A pod's env cannot be built (a missing Secret or key), as the kubelet reports it."""


@dataclass
class RunningPod:
    """A Pod the fake kubelet is running as a local process."""

    name: str
    uid: str
    process: subprocess.Popen[bytes]
    log: Path
    started_at: str
    reported: str = "Running"


@dataclass
class FakeKubelet:
    """Runs the emulator's Pods as local processes and reports their status back."""

    emulator: Emulator
    kubeconfig: Path
    logs: Path
    namespace: str
    hold: set[str] = field(default_factory=set)
    """Pod names never started (left Pending), to simulate a pod that cannot start."""
    _pods: dict[str, RunningPod] = field(default_factory=dict)
    _waiting: dict[str, str] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __post_init__(self) -> None:
        self.core = client.CoreV1Api(self.emulator.api_client())

    def start(self) -> FakeKubelet:
        """Start watching for Pods (polling every 0.2 s)."""
        self._thread = threading.Thread(target=self._loop, name="fake-kubelet", daemon=True)
        self._thread.start()
        return self

    def _secret_value(self, namespace: str, ref: dict[str, Any]) -> str:
        """A secretKeyRef's value, or ConfigError with the kubelet's message."""
        try:
            secret = self.core.read_namespaced_secret(ref.get("name", ""), namespace)
        except ApiException as exc:
            if exc.status == 404:
                raise ConfigError(f'secret "{ref.get("name")}" not found') from None
            raise
        data = secret.data or {}
        if ref.get("key") not in data:
            raise ConfigError(
                f"couldn't find key {ref.get('key')} in Secret {namespace}/{ref.get('name')}"
            )
        return base64.b64decode(data[ref["key"]]).decode()

    def _env(self, container: dict[str, Any], pod: dict[str, Any]) -> dict[str, str]:
        """The container's environment; ConfigError as the kubelet's CreateContainerConfigError."""
        env = {**os.environ, "KUBECONFIG": str(self.kubeconfig), "PYTHONPATH": str(REPO)}
        meta = pod["metadata"]
        for item in container.get("env") or []:
            if "value" in item:
                env[item["name"]] = str(item["value"])
            elif "secretKeyRef" in (item.get("valueFrom") or {}):
                ref = item["valueFrom"]["secretKeyRef"]
                env[item["name"]] = self._secret_value(meta["namespace"], ref)
            elif "valueFrom" in item:
                path = item["valueFrom"].get("fieldRef", {}).get("fieldPath", "")
                env[item["name"]] = {
                    "metadata.name": meta["name"],
                    "metadata.namespace": meta["namespace"],
                    "status.podIP": "127.0.0.1",
                }.get(path, "")
        return env

    def _launch(self, pod: dict[str, Any]) -> None:
        name = pod["metadata"]["name"]
        container = pod["spec"]["containers"][0]
        try:
            env = self._env(container, pod)
        except ConfigError as exc:
            if self._waiting.get(name) != str(exc):
                self._waiting[name] = str(exc)
                waiting = {"reason": "CreateContainerConfigError", "message": str(exc)}
                self._report(name, "Pending", {"waiting": waiting})
            return
        self._waiting.pop(name, None)
        log = self.logs / f"{name}.log"
        with log.open("wb") as out:
            process = self._spawn(pod, out, env)
        started = now_stamp()
        self._pods[name] = RunningPod(name, pod["metadata"].get("uid", ""), process, log, started)
        self._report(name, "Running", {"running": {"startedAt": started}})

    def _spawn(
        self, pod: dict[str, Any], out: IO[bytes], env: dict[str, str]
    ) -> subprocess.Popen[bytes]:
        """Start the pod's container as a local process with its resolved `env`, writing to
        `out`; its exit is the container's. (The hook a container-backed kubelet overrides.)"""
        container = pod["spec"]["containers"][0]
        command = list(container.get("command") or []) + list(container.get("args") or [])
        if command and command[0] in ("python", "python3"):
            command[0] = sys.executable
        return subprocess.Popen(
            command,
            cwd=REPO,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def _report(self, name: str, phase: str, state: dict[str, Any]) -> None:
        status = {
            "phase": phase,
            "podIP": "127.0.0.1",
            "containerStatuses": [
                {
                    "name": "peer",
                    "ready": phase == "Running",
                    "state": state,
                    "image": "local",
                    "imageID": "local",
                    "restartCount": 0,
                }
            ],
        }
        with contextlib.suppress(ApiException):
            self.core.patch_namespaced_pod_status(name, self.namespace, {"status": status})

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                pods = self.core.list_namespaced_pod(self.namespace).items
            except Exception:  # the emulator may be shutting down
                self._stop.wait(0.2)
                continue
            present = set()
            for pod in pods:
                raw = self.core.api_client.sanitize_for_serialization(pod)
                name = raw["metadata"]["name"]
                present.add(name)
                previous = self._pods.get(name)
                if previous is not None and previous.uid != raw["metadata"].get("uid", ""):
                    self._terminate(previous)  # a new pod of the same name replaced it
                    del self._pods[name]
                pending = (raw.get("status") or {}).get("phase") in (None, "Pending")
                if name not in self._pods and name not in self.hold and pending:
                    self._launch(raw)
            for name, running in list(self._pods.items()):
                code = running.process.poll()
                if name not in present:
                    self._terminate(running)
                    del self._pods[name]
                elif code is not None and running.reported == "Running":
                    phase = "Succeeded" if code == 0 else "Failed"
                    running.reported = phase
                    self._report(
                        name,
                        phase,
                        {
                            "terminated": {
                                "exitCode": code,
                                "reason": "Completed" if code == 0 else "Error",
                                "startedAt": running.started_at,
                                "finishedAt": now_stamp(),
                            }
                        },
                    )
            self._stop.wait(0.2)

    @staticmethod
    def _terminate(running: RunningPod, sig: int = signal.SIGTERM) -> None:
        if running.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(running.process.pid, sig)
            try:
                running.process.wait(15)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(running.process.pid, signal.SIGKILL)
                running.process.wait()

    def kill(self, name: str) -> None:
        """SIGKILL a pod's process group (the pod then reports Failed, exit -9)."""
        running = self._pods[name]
        with contextlib.suppress(ProcessLookupError):
            os.killpg(running.process.pid, signal.SIGKILL)

    def running(self) -> list[str]:
        """Pods whose process is still alive."""
        return [n for n, p in self._pods.items() if p.process.poll() is None]

    def log(self, name: str) -> str:
        """A pod's combined output so far."""
        path = self.logs / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self) -> None:
        """Stop polling and end every process (no leaks)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
        for running in self._pods.values():
            self._terminate(running)
        self._pods.clear()


class GarbageCollector:
    """Deletes objects whose owners are gone, like the Kubernetes garbage collector."""

    def __init__(self, emulator: Emulator) -> None:
        self.emulator = emulator
        self._stop = threading.Event()
        self._held = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="fake-gc", daemon=True)
        self._thread.start()

    @contextlib.contextmanager
    def held(self) -> Iterator[None]:
        """Collect nothing meanwhile (a busy garbage collector, or pods in their grace period
        keeping their names)."""
        self._held.set()
        try:
            yield
        finally:
            self._held.clear()

    def _loop(self) -> None:
        while not self._stop.wait(0.3):
            if self._held.is_set():
                continue
            try:
                objects = self.emulator.all_objects()
            except Exception:
                continue
            uids = {(o.get("metadata") or {}).get("uid") for _, o in objects}
            for resource, obj in objects:
                meta = obj.get("metadata") or {}
                owners = meta.get("ownerReferences") or []
                if owners and not any(ref.get("uid") in uids for ref in owners):
                    url = self.emulator.url + object_path(resource, meta)
                    with contextlib.suppress(OSError):
                        urllib.request.urlopen(
                            urllib.request.Request(url, method="DELETE"), timeout=5
                        )

    def stop(self) -> None:
        """Stop collecting."""
        self._stop.set()
        self._thread.join(5)


def object_path(ref: kmock.resource, meta: dict[str, Any]) -> str:
    """The API path of one namespaced object."""
    prefix = f"/api/{ref.version}" if not ref.group else f"/apis/{ref.group}/{ref.version}"
    return f"{prefix}/namespaces/{meta['namespace']}/{ref.plural}/{meta['name']}"


def wait_for(predicate: Any, timeout: float, interval: float = 0.2, what: str = "condition") -> Any:
    """Poll `predicate()` until truthy; AssertionError naming `what` after `timeout` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")


@contextlib.contextmanager
def cluster(
    tmp: Path, namespace: str = "rebound-test"
) -> Iterator[tuple[Emulator, Path, GarbageCollector]]:
    """An emulator + kubeconfig + GC for the duration of a test."""
    emulator = Emulator(namespace)
    gc = GarbageCollector(emulator)
    try:
        yield emulator, emulator.write_kubeconfig(tmp / "kubeconfig"), gc
    finally:
        gc.stop()
        emulator.close()
