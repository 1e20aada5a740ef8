"""The operator against a real API server: the local cluster of `make cluster-up`.

The operator is the Deployment's pod (a process on the process node), so its RSS and CPU are
read from its process. Two measurements:
- `sessions`: N BallSessions created at once while the nodes are cordoned (their peer pods
  stay Pending, so only the operator and the API server work): time from each creation to
  its peer pods existing (the last children it creates) and to its first status, and the
  operator's requests, all from the API server's audit log (its own clock: no polling
  granularity in the latencies).
- `noise`: the operator's RSS idle, then after U unrelated Pods and U unrelated ConfigMaps
  appear in another namespace (pods bound to a parking Node nothing runs). With
  label-selected watches the operator never receives them.
Prints Markdown rows; asserts nothing.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import psutil
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from bench.progress import Every, say
from localcluster.controlplane import OPERATOR_USER, audit_log
from localcluster.layout import Layout

BENCH_NS = "rebound-bench"
NOISE_NS = "rebound-noise"
PARKING_NODE = "bench-parking"
AUDIT_FLUSH_S = 3.0
GROUP, VERSION, PLURAL = "rebound.dev", "v1alpha1", "ballsessions"


@dataclass
class Api:
    """The clients the benchmark uses (admin credentials of the local cluster)."""

    core: client.CoreV1Api
    custom: client.CustomObjectsApi


def connect(layout: Layout) -> Api:
    """Clients from the local cluster's admin kubeconfig, with room for many threads."""
    configuration = client.Configuration()
    config.load_kube_config(str(layout.kubeconfig), client_configuration=configuration)  # type: ignore[no-untyped-call]
    configuration.connection_pool_maxsize = 32
    api = client.ApiClient(configuration)
    return Api(client.CoreV1Api(api), client.CustomObjectsApi(api))


def operator_process(api: Api) -> psutil.Process:
    """The operator pod's process (its containerID is `process://<pid>` on this node)."""
    pods = json.loads(
        api.core.list_namespaced_pod(
            "rebound-system",
            label_selector="app.kubernetes.io/name=rebound-operator",
            _preload_content=False,
        ).data
    )["items"]
    running = [p for p in pods if (p.get("status") or {}).get("phase") == "Running"]
    if len(running) != 1:
        raise RuntimeError(f"expected one running operator pod, found {len(running)}")
    cid = running[0]["status"]["containerStatuses"][0]["containerID"]
    return psutil.Process(int(cid.split("://", 1)[1]))


def operator_memory_limit_mib(api: Api) -> float | None:
    """The operator Deployment's memory limit in MiB (None if it has none)."""
    from kubernetes.client import AppsV1Api

    deployment = json.loads(
        AppsV1Api(api.core.api_client)
        .read_namespaced_deployment("rebound-operator", "rebound-system", _preload_content=False)
        .data
    )
    containers = deployment["spec"]["template"]["spec"]["containers"]
    limit = ((containers[0].get("resources") or {}).get("limits") or {}).get("memory")
    return None if limit is None else mebibytes(str(limit))


def mebibytes(quantity: str) -> float:
    """A Kubernetes memory quantity (`256Mi`, `1Gi`, `500M`, `1048576`) in MiB."""
    units = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "k": 1e3, "M": 1e6, "G": 1e9}
    for suffix, factor in units.items():
        if quantity.endswith(suffix):
            return float(quantity[: -len(suffix)]) * factor / 2**20
    return float(quantity) / 2**20


def cpu_s(process: psutil.Process) -> float:
    """User + system CPU seconds of a process."""
    times = process.cpu_times()
    return float(times.user + times.system)


def ensure_namespace(api: Api, name: str) -> None:
    """Create a namespace (restricted Pod Security) if missing."""
    body: Any = {
        "metadata": {
            "name": name,
            "labels": {"pod-security.kubernetes.io/enforce": "restricted"},
        }
    }
    with contextlib.suppress(ApiException):
        api.core.create_namespace(body)


def delete_namespace(api: Api, name: str, timeout: float = 300) -> None:
    """Delete a namespace and wait until it is gone (its pods at once: grace 0, since pods
    bound to the parking node have no kubelet to confirm a graceful stop)."""
    with contextlib.suppress(ApiException):
        api.core.delete_collection_namespaced_pod(name, grace_period_seconds=0)
        api.core.delete_collection_namespaced_config_map(name)
    with contextlib.suppress(ApiException):
        api.core.delete_namespace(name)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            api.core.read_namespace(name)
        except ApiException as exc:
            if exc.status == 404:
                return
        time.sleep(1)


def process_nodes(api: Api) -> list[str]:
    """The names of the local cluster's process nodes."""
    listing = json.loads(
        api.core.list_node(
            label_selector="rebound.dev/process-node=true", _preload_content=False
        ).data
    )
    return [str(n["metadata"]["name"]) for n in listing["items"]]


@contextlib.contextmanager
def cordoned(api: Api) -> Iterator[None]:
    """No process node takes new pods meanwhile."""
    nodes = process_nodes(api)
    body: Any = {"spec": {"unschedulable": True}}
    for node in nodes:
        api.core.patch_node(node, body)
    try:
        yield
    finally:
        for node in nodes:
            api.core.patch_node(node, {"spec": {"unschedulable": None}})  # type: ignore[arg-type]


def parallel(work: Callable[[int], Any], count: int, threads: int = 16) -> list[Any]:
    """Run work(i) for i in range(count) on a thread pool."""
    with ThreadPoolExecutor(threads) as pool:
        return list(pool.map(work, range(count)))


@dataclass
class AuditEvent:
    """One completed request, as the API server's audit log records it."""

    user: str
    verb: str
    what: str
    """`resource[/subresource]`, or the request URI."""
    name: str
    received: float
    completed: float
    code: int


class AuditTail:
    """Requests as the API server's audit log records them (the local cluster audits the
    operator's ServiceAccount and every BallSession creation, with the API server's clock)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = path.stat().st_size if path.exists() else 0

    def events(self) -> list[AuditEvent]:
        """Every request completed since this tail was opened, oldest first."""
        found: dict[str, AuditEvent] = {}
        if self.path.exists():
            with self.path.open("rb") as handle:
                handle.seek(self.offset)
                for line in handle:
                    try:
                        event = json.loads(line)
                    except ValueError:
                        continue
                    if event.get("stage") not in ("ResponseComplete", "ResponseStarted"):
                        continue
                    ref = event.get("objectRef") or {}
                    what = str(ref.get("resource") or event.get("requestURI", "?"))
                    if ref.get("subresource"):
                        what += f"/{ref['subresource']}"
                    found[str(event.get("auditID"))] = AuditEvent(
                        user=str((event.get("user") or {}).get("username", "")),
                        verb=str(event.get("verb")),
                        what=what,
                        name=str(ref.get("name") or ""),
                        received=_stamp(event.get("requestReceivedTimestamp")),
                        completed=_stamp(event.get("stageTimestamp")),
                        code=int((event.get("responseStatus") or {}).get("code") or 0),
                    )
        return sorted(found.values(), key=lambda e: e.received)


def _stamp(text: Any) -> float:
    return datetime.fromisoformat(str(text).replace("Z", "+00:00")).timestamp()


def operator_requests(events: list[AuditEvent]) -> Counter[str]:
    """`verb resource[/subresource]` -> how many requests the operator made."""
    return Counter(f"{e.verb} {e.what}" for e in events if e.user == OPERATOR_USER)


@dataclass
class Timings:
    """By the API server's clock: when each session was created, got its first status from
    the operator, and got its second peer pod (the operator creates the pods last)."""

    created: dict[str, float]
    status: dict[str, float]
    children: dict[str, float]

    def to_status(self) -> list[float]:
        """Seconds from creation to the first status, per session that got one."""
        return [t - self.created[n] for n, t in self.status.items() if n in self.created]

    def to_children(self) -> list[float]:
        """Seconds from creation to the last child, per session that got all."""
        return [t - self.created[n] for n, t in self.children.items() if n in self.created]

    def all_children_s(self) -> float | None:
        """Seconds from the first creation until every session had its children."""
        if not self.children or not self.created:
            return None
        return max(self.children.values()) - min(self.created.values())


def session_timings(events: list[AuditEvent], names: list[str]) -> Timings:
    """Each session's creation, first status and last child, from the audit log."""
    created: dict[str, float] = {}
    status: dict[str, float] = {}
    pods: dict[str, list[float]] = {}
    wanted = set(names)
    for e in events:
        if e.verb == "create" and e.what == "ballsessions" and e.code < 300:
            created.setdefault(e.name, e.completed)
        elif e.user != OPERATOR_USER or e.code >= 300:
            continue
        elif e.verb == "patch" and e.what == "ballsessions/status" and e.name in wanted:
            status.setdefault(e.name, e.completed)
        elif e.verb == "create" and e.what == "pods":
            session = e.name.rsplit("-", 1)[0]
            if session in wanted:
                pods.setdefault(session, []).append(e.completed)
    children = {n: max(times) for n, times in pods.items() if len(times) == 2}
    return Timings(created=created, status=status, children=children)


def sessions(api: Api, count: int, timeout: float = 300) -> dict[str, Any]:
    """Create `count` BallSessions at once; latency to their pods and first status, and the
    operator's API requests meanwhile (from the audit log)."""
    operator = operator_process(api)
    say(f"real API server: cordoning the node, creating {count} BallSessions at once")
    ensure_namespace(api, BENCH_NS)
    audit = AuditTail(audit_log(Layout.default()))
    names = [f"s{i:03d}" for i in range(count)]
    peak_rss = 0
    with cordoned(api):
        cpu_before = cpu_s(operator)

        def create(i: int) -> float:
            body = {
                "apiVersion": f"{GROUP}/{VERSION}",
                "kind": "BallSession",
                "metadata": {"name": names[i], "namespace": BENCH_NS},
                "spec": {},
            }
            api.custom.create_namespaced_custom_object(GROUP, VERSION, BENCH_NS, PLURAL, body)
            return time.monotonic()

        start = time.monotonic()
        parallel(create, count)
        pods_at: dict[str, float] = {}
        status_at: dict[str, float] = {}
        deadline = start + timeout
        say(f"real API server: waiting for every session's pods and status (at most {timeout:g} s)")
        every = Every()
        polls = 0
        while time.monotonic() < deadline and (len(pods_at) < count or len(status_at) < count):
            peak_rss = max(peak_rss, operator.memory_info().rss)
            polls += 1
            time.sleep(0.25)
            if polls % 4:
                continue  # list everything once a second only: the lists load the API server
            pods = json.loads(api.core.list_namespaced_pod(BENCH_NS, _preload_content=False).data)[
                "items"
            ]
            per_session: dict[str, int] = {}
            for pod in pods:
                session = (pod["metadata"].get("labels") or {}).get("rebound.dev/session")
                if session:
                    per_session[session] = per_session.get(session, 0) + 1
            listing = json.loads(
                api.custom.list_namespaced_custom_object(
                    GROUP, VERSION, BENCH_NS, PLURAL, _preload_content=False
                ).data
            )["items"]
            now = time.monotonic()
            for item in listing:
                name = item["metadata"]["name"]
                if name not in status_at and (item.get("status") or {}).get("phase"):
                    status_at[name] = now
            for name, pod_count in per_session.items():
                if name not in pods_at and pod_count >= 2:
                    pods_at[name] = now
            if every.due():
                say(f"  {len(pods_at)}/{count} with pods, {len(status_at)}/{count} with status")
        settle_end = time.monotonic() + 5
        while time.monotonic() < settle_end:  # every session is being reconciled meanwhile
            peak_rss = max(peak_rss, operator.memory_info().rss)
            time.sleep(0.25)
        operator_cpu = cpu_s(operator) - cpu_before
        time.sleep(AUDIT_FLUSH_S)  # the API server writes its audit log in batches
        events = audit.events()
        say(
            f"  {len(pods_at)}/{count} with their pods, {len(status_at)}/{count} with a status; "
            f"deleting namespace {BENCH_NS}"
        )
        delete_namespace(api, BENCH_NS)
    # Latencies by the API server's clock (audit log): from the create of the BallSession to
    # the operator's first status write and to its second pod's create.
    timings = session_timings(events, names)
    to_status, to_pods = timings.to_status(), timings.to_children()

    def pct(values: list[float], q: float) -> float | None:
        return float(np.percentile(values, q)) if values else None

    return {
        "sessions": count,
        "with_children": len(pods_at),
        "with_status": len(status_at),
        "all_children_s": timings.all_children_s(),
        "children_p50": pct(to_pods, 50),
        "children_p95": pct(to_pods, 95),
        "status_p50": pct(to_status, 50),
        "status_p95": pct(to_status, 95),
        "rss_mb": peak_rss / 2**20,
        "operator_cpu_s": operator_cpu,
        "requests": operator_requests(events),
    }


def _parking_node(api: Api) -> None:
    body: Any = {
        "metadata": {"name": PARKING_NODE, "labels": {"rebound.dev/bench": "parking"}},
        "spec": {"unschedulable": True},
    }
    with contextlib.suppress(ApiException):
        api.core.create_node(body)


def _noise_pod(i: int) -> dict[str, Any]:
    return {
        "metadata": {"name": f"web-{i:05d}", "labels": {"app": "web", "tier": "frontend"}},
        "spec": {
            "nodeName": PARKING_NODE,
            "tolerations": [{"operator": "Exists"}],
            "securityContext": {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [
                {
                    "name": "web",
                    "image": "registry.example/web:1.0",
                    "args": ["--port", "8080", "--workers", "4"],
                    "env": [{"name": "MODE", "value": "production"}],
                    "securityContext": {
                        "allowPrivilegeEscalation": False,
                        "capabilities": {"drop": ["ALL"]},
                    },
                }
            ],
        },
    }


def _noise_configmap(i: int) -> dict[str, Any]:
    return {
        "metadata": {"name": f"settings-{i:05d}", "labels": {"app": "web"}},
        "data": {"config.yaml": "listen: 8080\nworkers: 4\n" + "# padding\n" * 20},
    }


def noise(api: Api, unrelated: int, settle_s: float = 30) -> dict[str, Any]:
    """Operator RSS idle vs. with `unrelated` Pods and ConfigMaps it does not own."""
    operator = operator_process(api)
    say("real API server: the operator's idle memory (5 s)")
    time.sleep(5)
    idle = operator.memory_info().rss
    ensure_namespace(api, NOISE_NS)
    _parking_node(api)
    start = time.monotonic()
    say(f"real API server: creating {unrelated:,} unrelated Pods in {NOISE_NS}")
    parallel(
        lambda i: api.core.create_namespaced_pod(NOISE_NS, _noise_pod(i), _preload_content=False),
        unrelated,
    )  # type: ignore[arg-type]
    say(f"real API server: creating {unrelated:,} unrelated ConfigMaps in {NOISE_NS}")
    parallel(
        lambda i: api.core.create_namespaced_config_map(
            NOISE_NS, _noise_configmap(i), _preload_content=False
        ),
        unrelated,
    )  # type: ignore[arg-type]
    created_s = time.monotonic() - start
    peak = idle
    say(f"real API server: watching the operator's memory for {settle_s:g} s")
    settle_end = time.monotonic() + settle_s
    while time.monotonic() < settle_end:
        peak = max(peak, operator.memory_info().rss)
        time.sleep(0.5)
    after = operator.memory_info().rss
    say(f"real API server: deleting namespace {NOISE_NS} and its {2 * unrelated:,} objects")
    delete_namespace(api, NOISE_NS, timeout=600)
    with contextlib.suppress(ApiException):
        api.core.delete_node(PARKING_NODE)
    return {
        "unrelated": unrelated,
        "idle_mb": idle / 2**20,
        "after_mb": after / 2**20,
        "peak_mb": peak / 2**20,
        "added_mb": (peak - idle) / 2**20,
        "create_s": created_s,
    }
