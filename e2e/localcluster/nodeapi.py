"""The Kubernetes API calls the process node makes, as the node's own identity
(`system:node:<name>`, group `system:nodes`): the Node authorizer and NodeRestriction
admission limit it to its Node, its Lease, the pods bound to it, and the ConfigMaps,
Secrets and service-account tokens those pods reference, exactly as for a kubelet.

Synchronous (the official client): the node calls these from worker threads.
Objects are read and written as plain JSON dicts.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from kubernetes import client, config, watch
from kubernetes.client.exceptions import ApiException

LEASE_NAMESPACE = "kube-node-lease"
LEASE_DURATION_S = 40


def _json(response: Any) -> dict[str, Any]:
    return dict(json.loads(response.data))


def micro_time() -> str:
    """A MicroTime (leases need microseconds)."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class NodeApi:
    """API access for one node."""

    def __init__(self, kubeconfig: str, node_name: str) -> None:
        self.api: client.ApiClient = config.new_client_from_config(config_file=kubeconfig)  # type: ignore[no-untyped-call]
        self.core = client.CoreV1Api(self.api)
        self.coordination = client.CoordinationV1Api(self.api)
        self.node_name = node_name

    # ---- node and lease -----------------------------------------------------------------

    def register(self, node: Any) -> dict[str, Any]:
        """Create the Node (or take over an existing one) and write its status."""
        try:
            created = _json(self.core.create_node(node, _preload_content=False))
        except ApiException as exc:
            if exc.status != 409:
                raise
            created = _json(self.core.read_node(self.node_name, _preload_content=False))
        self.patch_node_status(node["status"])
        return created

    def patch_node_status(self, status: dict[str, Any]) -> None:
        """Strategic-merge the Node's status (conditions merge by type)."""
        self.core.patch_node_status(self.node_name, {"status": status}, _preload_content=False)

    def renew_lease(self, node_uid: str) -> None:
        """Create or renew the node's Lease in kube-node-lease (the node heartbeat)."""
        spec = {
            "holderIdentity": self.node_name,
            "leaseDurationSeconds": LEASE_DURATION_S,
            "renewTime": micro_time(),
        }
        try:
            self.coordination.patch_namespaced_lease(
                self.node_name, LEASE_NAMESPACE, {"spec": spec}, _preload_content=False
            )
            return
        except ApiException as exc:
            if exc.status != 404:
                raise
        lease: Any = {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {
                "name": self.node_name,
                "namespace": LEASE_NAMESPACE,
                "ownerReferences": [
                    {"apiVersion": "v1", "kind": "Node", "name": self.node_name, "uid": node_uid}
                ],
            },
            "spec": spec,
        }
        self.coordination.create_namespaced_lease(LEASE_NAMESPACE, lease, _preload_content=False)

    # ---- pods ---------------------------------------------------------------------------

    def list_pods(self) -> tuple[list[dict[str, Any]], str]:
        """Pods bound to this node, and the list's resourceVersion."""
        listing = _json(
            self.core.list_pod_for_all_namespaces(
                field_selector=f"spec.nodeName={self.node_name}", _preload_content=False
            )
        )
        return list(listing.get("items") or []), str(listing["metadata"]["resourceVersion"])

    def watch_pods(
        self, resource_version: str, timeout_s: int
    ) -> Iterator[tuple[str, dict[str, Any]]]:
        """(type, pod) events for pods bound to this node, from `resource_version` on."""
        stream: Any = watch.Watch()  # type: ignore[no-untyped-call]
        try:
            for event in stream.stream(
                self.core.list_pod_for_all_namespaces,
                field_selector=f"spec.nodeName={self.node_name}",
                resource_version=resource_version,
                timeout_seconds=timeout_s,
                allow_watch_bookmarks=True,
                _request_timeout=(10, timeout_s + 30),
            ):
                yield str(event["type"]), dict(event["raw_object"])
        finally:
            stream.stop()

    def patch_pod_status(self, namespace: str, name: str, uid: str, status: dict[str, Any]) -> None:
        """Write a pod's status (strategic merge; `uid` guards against a same-name successor)."""
        body = {"metadata": {"uid": uid}, "status": status}
        self.core.patch_namespaced_pod_status(name, namespace, body, _preload_content=False)

    def delete_pod(self, namespace: str, name: str, uid: str) -> None:
        """The kubelet's final delete: grace 0, only this incarnation (uid precondition)."""
        body = client.V1DeleteOptions(
            grace_period_seconds=0, preconditions=client.V1Preconditions(uid=uid)
        )
        try:
            self.core.delete_namespaced_pod(
                name, namespace, body=body, grace_period_seconds=0, _preload_content=False
            )
        except ApiException as exc:
            if exc.status not in (404, 409):
                raise

    # ---- what pods reference --------------------------------------------------------------

    def lookup(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        """A ConfigMap or Secret, or None if it does not exist."""
        read = (
            self.core.read_namespaced_config_map
            if kind == "ConfigMap"
            else self.core.read_namespaced_secret
        )
        try:
            return _json(read(name, namespace, _preload_content=False))
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def request_token(
        self,
        namespace: str,
        service_account: str,
        audiences: list[str],
        expiration_s: int,
        pod_name: str,
        pod_uid: str,
    ) -> str:
        """A bound service-account token for a pod (TokenRequest API)."""
        spec: Any = {
            "expirationSeconds": expiration_s,
            "boundObjectRef": {"apiVersion": "v1", "kind": "Pod", "name": pod_name, "uid": pod_uid},
        }
        if audiences:
            spec["audiences"] = audiences
        response = _json(
            self.core.create_namespaced_service_account_token(
                service_account,
                namespace,
                {"spec": spec},  # type: ignore[arg-type]
                _preload_content=False,
            )
        )
        return str(response["status"]["token"])
