"""Synchronous Kubernetes API calls the operator makes (run them in a thread, never on the loop).

Responses are read as raw JSON (`_preload_content=False`): the operator never needs the
client's models, and a model that fails to validate an unusual object must not stop it.

Creation is idempotent: a 409 AlreadyExists is adoption when the existing object's controller
is the same BallSession (same UID). An object at a child's name that belongs to a deleted
BallSession (or is being deleted) is waited for; anyone else's is a conflict and never
touched (see `ownership`). Reads and deletions likewise only ever concern objects this
session controls; pods are deleted with a UID precondition, so a pod that replaced ours in
the meantime is never deleted.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from rebound_operator import GROUP, PLURAL, VERSION
from rebound_operator.cache import ChildCache
from rebound_operator.children import ROLES, ApiRoute, Manifest, Names
from rebound_operator.ownership import Holder, classify, describe_owner, owned_by
from rebound_operator.telemetry import TimedApiClient
from rebound_operator.text import one_line

API_SERVER_NAMESPACE = "default"
API_SERVER_NAME = "kubernetes"
"""The API server's Service and EndpointSlice (kept there by the API server itself)."""
REFUSED = frozenset({400, 403, 422})
"""Statuses with which the API server refuses a request for good (retrying cannot help)."""


def _json(response: Any) -> dict[str, Any]:
    """The body of a raw (`_preload_content=False`) response: plain JSON, no model validation."""
    return dict(json.loads(response.data))


def api_message(exc: ApiException) -> str:
    """`HTTP 422 Unprocessable Entity: <the API server's message>`, one bounded line."""
    text = f"HTTP {exc.status} {exc.reason or ''}".strip()
    try:
        message = json.loads(exc.body or "{}").get("message")
    except (ValueError, AttributeError, RecursionError):
        message = None
    return one_line(f"{text}: {message}" if message else text)


API_THREADS = 32
"""Threads (and pooled connections) for the operator's synchronous API calls."""
ROUTES_TTL_S = 60.0
"""How long the API server's addresses (for the NetworkPolicies) are reused."""


class ChildConflict(RuntimeError):
    """A child's fixed name is taken by an object that is not this BallSession's."""


class ChildRefused(RuntimeError):
    """The API server refused to create a child (invalid, forbidden, over quota, ...)."""


class StatusRefused(RuntimeError):
    """The API server refused a status update (too large, invalid, ...)."""


@dataclass
class Ensured:
    """The outcome of creating a session's children."""

    created: list[str] = field(default_factory=list)
    """`Kind name` of each child created by this call."""
    leaving: str | None = None
    """Set if a name is still held by a leaving object: nothing after it was created."""
    objects: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    """(kind, name) -> the child as the API server returned it (created, or read and ours)."""

    def observed(self, session: str) -> Observed | None:
        """The session's pods and ConfigMaps as just created or adopted, if all are known:
        what a first `observe` would read, without reading it again."""
        names = Names.of(session)
        pods = [self.objects.get(("Pod", names.pod(r))) for r in ROLES]
        maps = [self.objects.get(("ConfigMap", names.configmap(r))) for r in ROLES]
        if any(obj is None for obj in (*pods, *maps)):
            return None
        data = [dict(m.get("data") or {}) for m in maps if m is not None]
        return Observed(server=pods[0], client=pods[1], server_data=data[0], client_data=data[1])


@dataclass
class Observed:
    """The children this session controls, as read from the API (None = not found/not ours)."""

    server: dict[str, Any] | None
    client: dict[str, Any] | None
    server_data: dict[str, Any] | None
    client_data: dict[str, Any] | None

    @classmethod
    def unstarted(cls, session: str) -> Observed:
        """What a session's children look like the moment they are created: pods nobody
        scheduled yet, empty ConfigMaps."""
        names = Names.of(session)
        return cls(
            server={"metadata": {"name": names.server_pod}},
            client={"metadata": {"name": names.client_pod}},
            server_data={},
            client_data={},
        )


def _has_port(entry: Any) -> bool:
    return isinstance(entry, dict) and isinstance(entry.get("port"), int)


def _describe(manifest: Manifest) -> str:
    meta = manifest["metadata"]
    return f"{manifest['kind']} {meta['namespace']}/{meta['name']}"


class Cluster:
    """The handful of API calls the operator needs, through the official client."""

    def __init__(
        self,
        api_client: client.ApiClient | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._api: client.ApiClient | None = None
        self._clock = clock
        self._routes: tuple[float, list[ApiRoute]] | None = None
        if api_client is not None:
            self.connect(api_client)

    def connect(self, api_client: client.ApiClient | None = None) -> None:
        """(Re)build the API clients, by default from the `kubernetes` default configuration
        (which `kopf.login_via_client` fills from the service account or kubeconfig)."""
        if api_client is None:
            configuration = client.Configuration.get_default_copy()
            configuration.connection_pool_maxsize = API_THREADS
            api_client = TimedApiClient(configuration)
        self._api = api_client
        self.core = client.CoreV1Api(self._api)
        self.rbac = client.RbacAuthorizationV1Api(self._api)
        self.networking = client.NetworkingV1Api(self._api)
        self.discovery = client.DiscoveryV1Api(self._api)
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

    def _read_or_none(self, read: Callable[..., Any], name: str, namespace: str) -> Any:
        try:
            return _json(read(name, namespace, _preload_content=False))
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def _holder(self, existing: dict[str, Any], owner_uid: str, namespace: str) -> Holder:
        return classify(existing, owner_uid, lambda name: self.read_session(name, namespace))

    def _judge(self, manifest: Manifest, existing: dict[str, Any], owner_uid: str) -> Holder:
        """OURS or LEAVING; ChildConflict if a stranger holds the name."""
        holder = self._holder(existing, owner_uid, manifest["metadata"]["namespace"])
        if holder is Holder.STRANGER:
            raise ChildConflict(
                f"{_describe(manifest)} already exists and is not this BallSession's "
                f"({describe_owner(existing)})"
            )
        return holder

    def ensure(
        self, manifest: Manifest, owner_uid: str
    ) -> tuple[Holder | None, dict[str, Any] | None]:
        """Create `manifest`: (None, created object) if created, (OURS, it) if this session
        already had it, (LEAVING, None) if a leaving object holds the name;
        ChildConflict/ChildRefused otherwise."""
        meta = manifest["metadata"]
        create, read = self._ops(manifest["kind"])
        try:
            return None, _json(create(meta["namespace"], manifest, _preload_content=False))
        except ApiException as exc:
            if exc.status in REFUSED:
                raise ChildRefused(
                    f"the API server refused to create {_describe(manifest)}: {api_message(exc)}"
                ) from None
            if exc.status != 409:
                raise
        existing = self._read_or_none(read, meta["name"], meta["namespace"])
        if existing is None:
            return Holder.LEAVING, None  # gone between our create and read: try again shortly
        holder = self._judge(manifest, existing, owner_uid)
        return holder, (existing if holder is Holder.OURS else None)

    def leaving_pod(self, manifest: Manifest, owner_uid: str) -> str | None:
        """If a leaving object (a deleted session's pod, or one being deleted) holds this
        pod's name, what it is; None if the name is free or already this session's;
        ChildConflict if a stranger holds it. Checked before anything of a session is
        created: a leaving session's pods must be gone first, or they could write into the
        new session's ConfigMaps."""
        meta = manifest["metadata"]
        existing = self._read_or_none(
            self.core.read_namespaced_pod, meta["name"], meta["namespace"]
        )
        if existing is None:
            return None
        if self._judge(manifest, existing, owner_uid) is Holder.LEAVING:
            return f"{_describe(manifest)} ({describe_owner(existing)})"
        return None

    def observe(
        self,
        session: str,
        namespace: str,
        owner_uid: str,
        cache: ChildCache | None = None,
        fresh: bool = False,
    ) -> Observed:
        """The session's two pods and its two ConfigMaps' data: only objects it controls.
        What `cache` knows is not read again (unless `fresh`); what is read is remembered
        in it."""
        names = Names.of(session)

        def owned(kind: str, read: Callable[..., Any], name: str) -> dict[str, Any] | None:
            known, obj = cache.get(kind, namespace, name) if cache and not fresh else (False, None)
            if not known:
                obj = self._read_or_none(read, name, namespace)
                if obj is not None and cache is not None:
                    cache.remember(kind, obj)
            return obj if owned_by(obj, owner_uid) else None

        pods = [owned("Pod", self.core.read_namespaced_pod, names.pod(r)) for r in ROLES]
        maps = [
            owned("ConfigMap", self.core.read_namespaced_config_map, names.configmap(r))
            for r in ROLES
        ]
        data = [None if m is None else dict(m.get("data") or {}) for m in maps]
        return Observed(server=pods[0], client=pods[1], server_data=data[0], client_data=data[1])

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

    def sessions_served(self, namespace: str) -> bool:
        """True once the API server serves BallSessions (their CRD is established)."""
        try:
            self.custom.list_namespaced_custom_object(
                GROUP, VERSION, namespace, PLURAL, limit=1, _preload_content=False
            )
            return True
        except ApiException as exc:
            if exc.status == 404:
                return False
            raise

    def patch_status(self, name: str, namespace: str, status: dict[str, Any]) -> None:
        """Merge-patch the BallSession's status subresource (StatusRefused if refused)."""
        try:
            self.custom.patch_namespaced_custom_object_status(
                GROUP, VERSION, namespace, PLURAL, name, {"status": status}, _preload_content=False
            )
        except ApiException as exc:
            if exc.status in REFUSED or exc.status == 413:
                raise StatusRefused(api_message(exc)) from None
            raise

    def delete_pod(self, name: str, namespace: str, uid: str) -> None:
        """Delete the pod `name` if it is still the one with this UID (gone already is fine)."""
        body = client.V1DeleteOptions(
            grace_period_seconds=5, preconditions=client.V1Preconditions(uid=uid)
        )
        try:
            self.core.delete_namespaced_pod(name, namespace, body=body, _preload_content=False)
        except ApiException as exc:
            if exc.status not in (404, 409):  # 409: the UID precondition failed, not ours
                raise

    def api_routes(self) -> list[ApiRoute]:
        """`read_api_routes`, read again at most every ROUTES_TTL_S seconds (every session's
        NetworkPolicy needs them; the API server's addresses seldom change)."""
        now = self._clock()
        if self._routes is not None and now - self._routes[0] < ROUTES_TTL_S:
            return list(self._routes[1])
        routes = self.read_api_routes()
        self._routes = (now, routes) if routes else None
        return routes

    def read_api_routes(self) -> list[ApiRoute]:
        """Where pods reach the API server: the `kubernetes` Service's ClusterIP and its
        EndpointSlice's addresses (as a NetworkPolicy sees them before and after the Service
        translation). Empty if neither can be read (the policy then falls back to ports)."""
        routes: list[ApiRoute] = []
        try:
            service = _json(
                self.core.read_namespaced_service(
                    API_SERVER_NAME, API_SERVER_NAMESPACE, _preload_content=False
                )
            )
            spec = service.get("spec") or {}
            ips = [ip for ip in spec.get("clusterIPs") or [spec.get("clusterIP")] if ip]
            ports = [p["port"] for p in spec.get("ports") or [] if _has_port(p)]
            routes.append(ApiRoute(tuple(map(str, ips)), tuple(ports)))
        except ApiException:
            pass
        try:
            slice_ = _json(
                self.discovery.read_namespaced_endpoint_slice(
                    API_SERVER_NAME, API_SERVER_NAMESPACE, _preload_content=False
                )
            )
            addresses = [
                str(address)
                for endpoint in slice_.get("endpoints") or []
                if isinstance(endpoint, dict)
                for address in endpoint.get("addresses") or []
            ]
            ports = [p["port"] for p in slice_.get("ports") or [] if _has_port(p)]
            routes.append(ApiRoute(tuple(addresses), tuple(ports)))
        except ApiException:
            pass
        return routes
