"""Synchronous Kubernetes API calls the operator makes (run them in a thread, never on the loop).

Responses are read as raw JSON (`_preload_content=False`): the operator never needs the
client's models, and a model that fails to validate an unusual object must not stop it.

Creation is idempotent: a 409 AlreadyExists is adoption when the existing object is owned by
the same BallSession (same UID), and an error otherwise.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from rebound_operator import GROUP, PLURAL, VERSION
from rebound_operator.children import Manifest, Names


def _json(response: Any) -> dict[str, Any]:
    """The body of a raw (`_preload_content=False`) response: plain JSON, no model validation."""
    return dict(json.loads(response.data))


class ChildConflict(RuntimeError):
    """A child's fixed name is taken by an object this BallSession does not own."""


@dataclass
class Observed:
    """Raw children as read from the API (None = not found)."""

    server: dict[str, Any] | None
    client: dict[str, Any] | None
    signaling: dict[str, str] | None


class Cluster:
    """The handful of API calls the operator needs, through the official client."""

    def __init__(self, api_client: client.ApiClient | None = None) -> None:
        self._api: client.ApiClient | None = None
        if api_client is not None:
            self.connect(api_client)

    def connect(self, api_client: client.ApiClient | None = None) -> None:
        """(Re)build the API clients, by default from the `kubernetes` default configuration
        (which `kopf.login_via_client` fills from the service account or kubeconfig)."""
        self._api = api_client or client.ApiClient()
        self.core = client.CoreV1Api(self._api)
        self.rbac = client.RbacAuthorizationV1Api(self._api)
        self.networking = client.NetworkingV1Api(self._api)
        self.custom = client.CustomObjectsApi(self._api)

    @property
    def connected(self) -> bool:
        """True once `connect` ran (after kopf's login)."""
        return self._api is not None

    def _ops(self, kind: str) -> tuple[Callable[..., Any], Callable[..., Any]]:
        ops: dict[str, tuple[Callable[..., Any], Callable[..., Any]]] = {
            "ConfigMap": (
                self.core.create_namespaced_config_map,
                self.core.read_namespaced_config_map,
            ),
            "ServiceAccount": (
                self.core.create_namespaced_service_account,
                self.core.read_namespaced_service_account,
            ),
            "Role": (self.rbac.create_namespaced_role, self.rbac.read_namespaced_role),
            "RoleBinding": (
                self.rbac.create_namespaced_role_binding,
                self.rbac.read_namespaced_role_binding,
            ),
            "NetworkPolicy": (
                self.networking.create_namespaced_network_policy,
                self.networking.read_namespaced_network_policy,
            ),
            "Pod": (self.core.create_namespaced_pod, self.core.read_namespaced_pod),
        }
        return ops[kind]

    def ensure(self, manifest: Manifest, owner_uid: str) -> str:
        """Create `manifest`, or adopt the existing object if this owner already made it.

        Returns "created" or "adopted"; raises ChildConflict if someone else owns the name.
        """
        meta = manifest["metadata"]
        create, read = self._ops(manifest["kind"])
        try:
            create(meta["namespace"], manifest, _preload_content=False)
            return "created"
        except ApiException as exc:
            if exc.status != 409:
                raise
        existing = _json(read(meta["name"], meta["namespace"], _preload_content=False))
        owners = (existing.get("metadata") or {}).get("ownerReferences") or []
        if any(ref.get("uid") == owner_uid for ref in owners):
            return "adopted"
        raise ChildConflict(
            f"{manifest['kind']} {meta['namespace']}/{meta['name']} already exists and is not "
            "owned by this BallSession"
        )

    def _read_or_none(self, read: Callable[..., Any], name: str, namespace: str) -> Any:
        try:
            return _json(read(name, namespace, _preload_content=False))
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def observe(self, session: str, namespace: str) -> Observed:
        """The session's two pods and the signaling ConfigMap's data."""
        names = Names.of(session)
        configmap = self._read_or_none(
            self.core.read_namespaced_config_map, names.configmap, namespace
        )
        return Observed(
            server=self._read_or_none(self.core.read_namespaced_pod, names.server_pod, namespace),
            client=self._read_or_none(self.core.read_namespaced_pod, names.client_pod, namespace),
            signaling=None if configmap is None else dict(configmap.get("data") or {}),
        )

    def read_session(self, name: str, namespace: str) -> dict[str, Any] | None:
        """A BallSession, or None if it is gone."""
        try:
            return _json(
                self.custom.get_namespaced_custom_object(
                    GROUP, VERSION, namespace, PLURAL, name, _preload_content=False
                )
            )
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def patch_status(self, name: str, namespace: str, status: dict[str, Any]) -> None:
        """Merge-patch the BallSession's status subresource."""
        self.custom.patch_namespaced_custom_object_status(
            GROUP, VERSION, namespace, PLURAL, name, {"status": status}, _preload_content=False
        )

    def delete_pod(self, name: str, namespace: str) -> None:
        """Delete a pod (gone already is fine)."""
        try:
            self.core.delete_namespaced_pod(
                name, namespace, grace_period_seconds=5, _preload_content=False
            )
        except ApiException as exc:
            if exc.status != 404:
                raise
