"""Pure builders for everything a BallSession owns: per-role signaling ConfigMaps and RBAC,
the NetworkPolicy, and the two peer Pods.

Each role (server, client) has its own ConfigMap that only it may patch, its own
ServiceAccount, and a Role + RoleBinding of the same name (docs/CONTRACTS.md), so a client
can never write the server's results. Names are fixed (`<session>-server-signaling`,
`<session>-server`, ...) so a retried handler finds what an earlier attempt created instead
of making a second copy.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from rebound_operator import API_VERSION, KIND
from rebound_operator.placement import scheduling
from rebound_operator.spec import DEFAULT_PENDING_TIMEOUT, BallSessionSpec

Role = Literal["server", "client"]
ROLES: tuple[Role, Role] = ("server", "client")
Manifest = dict[str, Any]

SESSION_LABEL = "rebound.dev/session"
ROLE_LABEL = "rebound.dev/role"
PEER_COMPONENT = ("app.kubernetes.io/component", "peer")
"""The label that marks the two peer pods among a session's children."""
MANAGED_BY = ("app.kubernetes.io/managed-by", "rebound-operator")
APP_LABELS = {"app.kubernetes.io/name": "rebound", MANAGED_BY[0]: MANAGED_BY[1]}
CHILD_SELECTOR = f"{MANAGED_BY[0]}={MANAGED_BY[1]},{SESSION_LABEL}"
"""The label selector that matches every child of every session and nothing else we create:
the operator's pod and ConfigMap watches send it to the API server (server-side filtering)."""
OWN_VERBS = ["get", "watch", "patch"]
"""What a peer does with its own ConfigMap (peers.signaling.configmap): read it, merge-patch
its keys, and watch it with a `metadata.name` field selector, which RBAC authorises against
`resourceNames`. No `update`, no `list`, no `create` (the operator creates it, since `create`
cannot be limited by name)."""
PEER_VERBS = ["get", "watch"]
"""What a peer does with the other role's ConfigMap: read and watch it, never write."""
VIEW_PORT = 8090
"""Where a server with `spec.liveView` serves its live view: 127.0.0.1 inside its pod, which
`kubectl port-forward` reaches (it connects to localhost in the pod's network namespace)."""
ICE_CREDENTIAL_ENV = "REBOUND_ICE_CREDENTIAL_{index}"
"""Env var holding the credential of `iceServers[index]` (peers.cli.rtc_configuration)."""

DNS_PEERS = {
    "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}},
    "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}},
}
"""The cluster DNS pods (CoreDNS and kube-dns both carry `k8s-app: kube-dns`)."""
API_SERVER_PORTS = (443, 6443)
"""Fallback when the API server's addresses are unknown: its Service port (443) and the
usual port of its endpoints (6443), to any destination."""


def other(role: Role) -> Role:
    """The other peer's role."""
    return "client" if role == "server" else "server"


@dataclass(frozen=True)
class Owner:
    """The BallSession that owns the children (for ownerReferences)."""

    name: str
    namespace: str
    uid: str

    def reference(self) -> dict[str, Any]:
        """An ownerReference: controller, and blocking foreground deletion like Jobs do."""
        return {
            "apiVersion": API_VERSION,
            "kind": KIND,
            "name": self.name,
            "uid": self.uid,
            "controller": True,
            "blockOwnerDeletion": True,
        }


@dataclass(frozen=True)
class Names:
    """The fixed names of one session's children."""

    session: str

    @classmethod
    def of(cls, session: str) -> Names:
        """Children names for the BallSession called `session`."""
        return cls(session)

    def configmap(self, role: Role) -> str:
        """The signaling ConfigMap a role writes (and the other only reads)."""
        return f"{self.session}-{role}-signaling"

    def account(self, role: Role) -> str:
        """The role's ServiceAccount, Role and RoleBinding (one name for all three)."""
        return f"{self.session}-{role}"

    def pod(self, role: Role) -> str:
        """The pod name of a role."""
        return f"{self.session}-{role}"

    @property
    def server_pod(self) -> str:
        """`<session>-server`."""
        return self.pod("server")

    @property
    def client_pod(self) -> str:
        """`<session>-client`."""
        return self.pod("client")

    @property
    def network_policy(self) -> str:
        """`<session>-peers`."""
        return f"{self.session}-peers"


def labels(owner: Owner, role: Role | None = None) -> dict[str, str]:
    """Labels on every child: ours only (never the parent's, e.g. GitOps tracking labels)."""
    result = {**APP_LABELS, SESSION_LABEL: owner.name}
    if role is not None:
        result[ROLE_LABEL] = role
    return result


def peer_labels(owner: Owner) -> dict[str, str]:
    """The labels that select a session's two peer pods and nothing else (NetworkPolicy,
    placement terms)."""
    return {SESSION_LABEL: owner.name, PEER_COMPONENT[0]: PEER_COMPONENT[1]}


def _metadata(owner: Owner, name: str, role: Role | None = None) -> dict[str, Any]:
    return {
        "name": name,
        "namespace": owner.namespace,
        "labels": labels(owner, role),
        "ownerReferences": [owner.reference()],
    }


def configmap(owner: Owner, role: Role) -> Manifest:
    """A role's signaling ConfigMap, empty until that peer writes to it."""
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": _metadata(owner, Names.of(owner.name).configmap(role), role),
        "data": {},
    }


def service_account(owner: Owner, role: Role) -> Manifest:
    """A role's own ServiceAccount (no token unless a pod asks for one)."""
    return {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": _metadata(owner, Names.of(owner.name).account(role), role),
        "automountServiceAccountToken": False,
    }


def role(owner: Owner, which: Role) -> Manifest:
    """get/watch/patch on the role's own ConfigMap, get/watch on the other's; nothing else."""
    names = Names.of(owner.name)
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": _metadata(owner, names.account(which), which),
        "rules": [
            {
                "apiGroups": [""],
                "resources": ["configmaps"],
                "resourceNames": [names.configmap(which)],
                "verbs": list(OWN_VERBS),
            },
            {
                "apiGroups": [""],
                "resources": ["configmaps"],
                "resourceNames": [names.configmap(other(which))],
                "verbs": list(PEER_VERBS),
            },
        ],
    }


def role_binding(owner: Owner, which: Role) -> Manifest:
    """Binds a role's Role to its ServiceAccount."""
    names = Names.of(owner.name)
    name = names.account(which)
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": _metadata(owner, name, which),
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
        "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": owner.namespace}],
    }


def ice_servers_arg(spec: BallSessionSpec) -> str:
    """The peers' `--ice-servers` JSON: URLs and usernames, never a credential."""
    return json.dumps([server.peer_view() for server in spec.ice_servers])


def connect_timeout(spec: BallSessionSpec, pending_timeout_seconds: int) -> int:
    """The peers' `--connect-timeout`: a peer waits for the other as long as the operator
    would, i.e. for it to be scheduled and started (the pending timeout; the spec's, or the
    operator's default `pending_timeout_seconds`), then to signal."""
    pending = spec.pending_timeout_seconds or pending_timeout_seconds
    return spec.signaling_timeout_seconds + pending


def peer_args(
    which: Role,
    owner: Owner,
    spec: BallSessionSpec,
    pending_timeout_seconds: int = DEFAULT_PENDING_TIMEOUT,
) -> list[str]:
    """The peer's command-line arguments (see docs/CONTRACTS.md)."""
    names = Names.of(owner.name)
    args = [
        "offer" if which == "server" else "answer",
        "--signaling",
        "configmap",
        "--configmap",
        names.configmap(which),
        "--peer-configmap",
        names.configmap(other(which)),
        "--namespace",
        owner.namespace,
        "--connect-timeout",
        str(connect_timeout(spec, pending_timeout_seconds)),
        "--ice-servers",
        ice_servers_arg(spec),
    ]
    if which == "server":
        args += spec.session().to_peer_args()
        if spec.live_view:
            args += ["--view-port", str(VIEW_PORT)]
    return args


def peer_env(spec: BallSessionSpec) -> list[dict[str, Any]]:
    """The peer container's env: TURN credentials come from their Secrets (secretKeyRef)."""
    env: list[dict[str, Any]] = [{"name": "PYTHONUNBUFFERED", "value": "1"}]
    for index, server in enumerate(spec.ice_servers):
        ref = server.credential_secret_ref
        if ref is not None:
            env.append(
                {
                    "name": ICE_CREDENTIAL_ENV.format(index=index),
                    "valueFrom": {"secretKeyRef": {"name": ref.name, "key": ref.key}},
                }
            )
    return env


def _container_security_context() -> dict[str, Any]:
    # No runAsUser/runAsGroup: the peer image runs as a numeric non-root USER, which
    # runAsNonRoot verifies; fixed UIDs are rejected by e.g. OpenShift's restricted-v2.
    return {
        "runAsNonRoot": True,
        "readOnlyRootFilesystem": True,
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def pod(
    which: Role,
    owner: Owner,
    spec: BallSessionSpec,
    *,
    default_image: str,
    pull_policy: str = "IfNotPresent",
    pending_timeout_seconds: int = DEFAULT_PENDING_TIMEOUT,
) -> Manifest:
    """A peer Pod: run once, restricted Pod Security, its role's own ServiceAccount token."""
    names = Names.of(owner.name)
    deadline = spec.active_deadline_seconds
    pod_spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "serviceAccountName": names.account(which),
        "automountServiceAccountToken": True,  # the peers patch/watch their ConfigMaps
        "enableServiceLinks": False,
        "terminationGracePeriodSeconds": 10,
        "securityContext": {
            "runAsNonRoot": True,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": [
            {
                "name": "peer",
                "image": spec.image or default_image,
                "imagePullPolicy": pull_policy,
                "command": ["python", "-m", f"peers.{which}"],
                "args": peer_args(which, owner, spec, pending_timeout_seconds),
                "env": peer_env(spec),
                "resources": spec.resources_of(which),
                "securityContext": _container_security_context(),
                "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
            }
        ],
        "volumes": [{"name": "tmp", "emptyDir": {"medium": "Memory", "sizeLimit": "64Mi"}}],
    }
    pod_spec.update(scheduling(spec, which, {"matchLabels": peer_labels(owner)}))
    if deadline:
        # Backstop only: the operator fails the session at the deadline itself.
        pod_spec["activeDeadlineSeconds"] = deadline + 60
    if which == "server" and spec.live_view:
        # Informational (port-forward needs no declared port); bound to 127.0.0.1 only.
        container = pod_spec["containers"][0]
        container["ports"] = [{"name": "view", "containerPort": VIEW_PORT, "protocol": "TCP"}]
    metadata = _metadata(owner, names.pod(which), which)
    metadata["labels"][PEER_COMPONENT[0]] = PEER_COMPONENT[1]
    return {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": pod_spec}


def live_view_hint(owner: Owner) -> str:
    """How a user opens the live view of a session with `spec.liveView`."""
    pod_name = Names.of(owner.name).server_pod
    return (
        f"live view: kubectl -n {owner.namespace} port-forward pod/{pod_name} {VIEW_PORT}, "
        f"then open http://127.0.0.1:{VIEW_PORT}/ (while the session runs)"
    )


@dataclass(frozen=True)
class ApiRoute:
    """Addresses and ports at which pods reach the API server (its Service or endpoints)."""

    addresses: tuple[str, ...]
    ports: tuple[int, ...]


def _cidr(address: str) -> str:
    ip = ipaddress.ip_address(address)
    return f"{ip}/{ip.max_prefixlen}"


def _api_rules(routes: Sequence[ApiRoute]) -> list[dict[str, Any]]:
    rules = []
    for route in routes:
        cidrs = []
        for address in route.addresses:
            try:
                cidrs.append(_cidr(address))
            except ValueError:
                continue
        ports = [p for p in route.ports if isinstance(p, int) and 0 < p < 65536]
        if cidrs and ports:
            rules.append(
                {
                    "to": [{"ipBlock": {"cidr": cidr}} for cidr in cidrs],
                    "ports": [{"protocol": "TCP", "port": port} for port in ports],
                }
            )
    if not rules:
        rules = [{"ports": [{"protocol": "TCP", "port": port} for port in API_SERVER_PORTS]}]
    return rules


def network_policy(
    owner: Owner, spec: BallSessionSpec, api_routes: Sequence[ApiRoute] = ()
) -> Manifest:
    """Only this session's two peers reach each other (UDP, any port: ICE picks ephemeral
    ones); they may reach the cluster DNS pods and the API server (at `api_routes`, else
    on its usual ports anywhere), and nothing else reaches them. With iceServers the peers
    must reach STUN/TURN servers anywhere, so egress is open."""
    session = peer_labels(owner)
    peers = [{"podSelector": {"matchLabels": session}}]
    egress: list[dict[str, Any]] = [
        {"to": peers, "ports": [{"protocol": "UDP"}]},
        {"to": [DNS_PEERS], "ports": [{"protocol": p, "port": 53} for p in ("UDP", "TCP")]},
        *_api_rules(api_routes),
    ]
    if spec.ice_servers:
        egress = [{}]
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": _metadata(owner, Names.of(owner.name).network_policy),
        "spec": {
            "podSelector": {"matchLabels": session},
            "policyTypes": ["Ingress", "Egress"],
            "ingress": [{"from": peers, "ports": [{"protocol": "UDP"}]}],
            "egress": egress,
        },
    }


def all_children(
    owner: Owner,
    spec: BallSessionSpec,
    *,
    default_image: str,
    pull_policy: str = "IfNotPresent",
    api_routes: Sequence[ApiRoute] = (),
    pending_timeout_seconds: int = DEFAULT_PENDING_TIMEOUT,
) -> list[Manifest]:
    """Every child in creation order (ConfigMaps and RBAC before the pods that use them)."""
    return [
        *(configmap(owner, r) for r in ROLES),
        *(service_account(owner, r) for r in ROLES),
        *(role(owner, r) for r in ROLES),
        *(role_binding(owner, r) for r in ROLES),
        network_policy(owner, spec, api_routes),
        *(
            pod(
                r,
                owner,
                spec,
                default_image=default_image,
                pull_policy=pull_policy,
                pending_timeout_seconds=pending_timeout_seconds,
            )
            for r in ROLES
        ),
    ]
