"""The process node's NetworkPolicy enforcement: iptables in every pod's network namespace.

A thread re-reads NetworkPolicies, pods and namespaces every `SYNC_S` seconds and gives each
local pod the filter table `netpol.ruleset` computes for it; a pod's table is also written
before its container starts (`before_start`), so it never runs unprotected. It reads with
the cluster's admin credential, where a CNI would have a ServiceAccount of its own (the node's
identity may not list NetworkPolicies).
"""

from __future__ import annotations

import json
import logging
import subprocess
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from kubernetes import client, config

from localcluster import netpol
from localcluster.netpol import EGRESS, INGRESS, PodAddress

log = logging.getLogger("localcluster.policies")
SYNC_S = 1.0


@dataclass(frozen=True)
class LocalPod:
    """A pod this node runs: its network namespace and address."""

    uid: str
    netns: str
    ip: str


@dataclass
class Snapshot:
    """What the last sync read from the API server."""

    policies: list[dict[str, Any]]
    pods: list[dict[str, Any]]
    namespaces: dict[str, dict[str, str]]


def addresses(pods: list[dict[str, Any]], local: Mapping[str, LocalPod]) -> list[PodAddress]:
    """Every pod with its address: the node's own record first, else its status."""
    result = []
    for pod in pods:
        meta = pod.get("metadata") or {}
        here = local.get(str(meta.get("uid")))
        ip = here.ip if here is not None else (pod.get("status") or {}).get("podIP")
        result.append(
            PodAddress(
                namespace=str(meta.get("namespace")),
                name=str(meta.get("name")),
                labels=dict(meta.get("labels") or {}),
                ip=str(ip) if ip else None,
            )
        )
    return result


def table_for(pod: dict[str, Any], snapshot: Snapshot, local: Mapping[str, LocalPod]) -> str:
    """The iptables-restore text for `pod` under the policies of `snapshot`."""
    meta = pod.get("metadata") or {}
    known = {str((p.get("metadata") or {}).get("uid")) for p in snapshot.pods}
    pods = snapshot.pods if str(meta.get("uid")) in known else [*snapshot.pods, pod]
    everyone = addresses(pods, local)
    me = next(
        a for a in everyone if (a.namespace, a.name) == (meta.get("namespace"), meta.get("name"))
    )
    me = PodAddress(me.namespace, me.name, dict(meta.get("labels") or {}), me.ip)
    ingress = netpol.allowed(me, snapshot.policies, everyone, snapshot.namespaces, INGRESS)
    egress = netpol.allowed(me, snapshot.policies, everyone, snapshot.namespaces, EGRESS)
    return netpol.ruleset(ingress, egress)


def apply_table(netns: str, table: str) -> None:
    """Replace the filter table of `netns` (RuntimeError naming the failure)."""
    result = subprocess.run(
        ["ip", "netns", "exec", netns, "iptables-restore"],
        input=table,
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        raise RuntimeError(f"iptables-restore in {netns}: {result.stderr.strip()}")


class PolicyEnforcer:
    """Keeps every local pod's filter table in line with the cluster's NetworkPolicies."""

    def __init__(
        self,
        kubeconfig: str,
        nodes: list[str],
        local: Callable[[], dict[str, tuple[LocalPod, dict[str, Any]]]],
    ):
        api: client.ApiClient = config.new_client_from_config(config_file=kubeconfig)  # type: ignore[no-untyped-call]
        self.core = client.CoreV1Api(api)
        self.networking = client.NetworkingV1Api(api)
        self.nodes = nodes
        self.local = local
        self.snapshot = Snapshot([], [], {})
        self.applied: dict[str, str] = {}
        self.lock = threading.Lock()
        self.stopping = threading.Event()

    def read(self) -> Snapshot:
        """Policies, pods and namespace labels, as the API server has them now."""

        def items(response: Any) -> list[dict[str, Any]]:
            return list(json.loads(response.data)["items"])

        policies = items(
            self.networking.list_network_policy_for_all_namespaces(_preload_content=False)
        )
        # Only the process nodes' pods have addresses (unscheduled ones, or those bound to a
        # node nothing runs, are nobody's peers): list them node by node, server-side.
        pods = [
            pod
            for node in self.nodes
            for pod in items(
                self.core.list_pod_for_all_namespaces(
                    field_selector=f"spec.nodeName={node}", _preload_content=False
                )
            )
        ]
        namespaces = {
            str(n["metadata"]["name"]): dict(n["metadata"].get("labels") or {})
            for n in items(self.core.list_namespace(_preload_content=False))
        }
        return Snapshot(policies, pods, namespaces)

    def before_start(self, pod: dict[str, Any], here: LocalPod) -> None:
        """Write `pod`'s table before its container starts (with the last snapshot)."""
        with self.lock:
            local = {uid: entry[0] for uid, entry in self.local().items()}
            local[here.uid] = here
            table = table_for(pod, self.snapshot, local)
            apply_table(here.netns, table)
            self.applied[here.uid] = table

    def sync(self) -> None:
        """One round: re-read, and re-write every table that changed."""
        snapshot = self.read()
        with self.lock:
            self.snapshot = snapshot
            entries = self.local()
            local = {uid: entry[0] for uid, entry in entries.items()}
            for uid, (here, pod) in entries.items():
                table = table_for(pod, snapshot, local)
                if self.applied.get(uid) == table:
                    continue
                try:
                    apply_table(here.netns, table)
                    self.applied[uid] = table
                except RuntimeError as exc:
                    log.warning("%s", exc)  # the pod may be going away; next round retries
            for uid in set(self.applied) - set(entries):
                del self.applied[uid]

    def run(self) -> None:
        """Thread: sync every SYNC_S seconds until `stopping` is set."""
        while not self.stopping.is_set():
            try:
                self.sync()
            except Exception as exc:
                log.warning("network policies: %s", exc)
            self.stopping.wait(SYNC_S)
