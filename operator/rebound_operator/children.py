"""Pure builders for everything a BallSession owns: ConfigMap, RBAC, and the two peer Pods.

Names are fixed (`<session>-signaling`, `-peer`, `-server`, `-client`) so a retried
handler finds what an earlier attempt created instead of making a second copy.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Literal

from rebound_operator.spec import BallSessionSpec

Role = Literal["server", "client"]
Manifest = dict[str, Any]

SESSION_LABEL = "rebound.dev/session"
ROLE_LABEL = "rebound.dev/role"
APP_LABELS = {
    "app.kubernetes.io/name": "rebound",
    "app.kubernetes.io/managed-by": "rebound-operator",
}
PEER_USER_ID = 10001
SIGNALING_VERBS = ["get", "watch", "patch"]
"""What the peers do with their ConfigMap (peers.signaling.configmap): read it, merge-patch
their keys, and watch it with a `metadata.name` field selector, which RBAC authorises against
`resourceNames`. No `update`, no `list` of other ConfigMaps, no `create` (the operator creates
it, since `create` cannot be limited by name)."""


@dataclass(frozen=True)
class Owner:
    """The BallSession that owns the children (for ownerReferences)."""

    name: str
    namespace: str
    uid: str
    api_version: str = "rebound.dev/v1alpha1"
    kind: str = "BallSession"

    def reference(self) -> dict[str, Any]:
        """An ownerReference: controller, and blocking foreground deletion like Jobs do."""
        return {
            "apiVersion": self.api_version,
            "kind": self.kind,
            "name": self.name,
            "uid": self.uid,
            "controller": True,
            "blockOwnerDeletion": True,
        }


@dataclass(frozen=True)
class Names:
    """The fixed names of one session's children."""

    configmap: str
    service_account: str
    role: str
    role_binding: str
    server_pod: str
    client_pod: str
    network_policy: str

    @classmethod
    def of(cls, session: str) -> Names:
        """Children names for the BallSession called `session`."""
        return cls(
            configmap=f"{session}-signaling",
            service_account=f"{session}-peer",
            role=f"{session}-peer",
            role_binding=f"{session}-peer",
            server_pod=f"{session}-server",
            client_pod=f"{session}-client",
            network_policy=f"{session}-peers",
        )

    def pod(self, role: Role) -> str:
        """The pod name of a role."""
        return self.server_pod if role == "server" else self.client_pod


def labels(owner: Owner, role: Role | None = None) -> dict[str, str]:
    """Labels on every child: ours only (never the parent's, e.g. GitOps tracking labels)."""
    result = {**APP_LABELS, SESSION_LABEL: owner.name}
    if role is not None:
        result[ROLE_LABEL] = role
        result["app.kubernetes.io/component"] = "peer"
    return result


def _metadata(owner: Owner, name: str, role: Role | None = None) -> dict[str, Any]:
    return {
        "name": name,
        "namespace": owner.namespace,
        "labels": labels(owner, role),
        "ownerReferences": [owner.reference()],
    }


def configmap(owner: Owner) -> Manifest:
    """The signaling ConfigMap, empty until the server writes its offer."""
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": _metadata(owner, Names.of(owner.name).configmap),
        "data": {},
    }


def service_account(owner: Owner) -> Manifest:
    """The peers' own ServiceAccount."""
    return {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": _metadata(owner, Names.of(owner.name).service_account),
        "automountServiceAccountToken": False,
    }


def role(owner: Owner) -> Manifest:
    """A Role allowing only get/watch/patch on this session's ConfigMap."""
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": _metadata(owner, Names.of(owner.name).role),
        "rules": [
            {
                "apiGroups": [""],
                "resources": ["configmaps"],
                "resourceNames": [Names.of(owner.name).configmap],
                "verbs": list(SIGNALING_VERBS),
            }
        ],
    }


def role_binding(owner: Owner) -> Manifest:
    """Binds the Role to the peers' ServiceAccount."""
    names = Names.of(owner.name)
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": _metadata(owner, names.role_binding),
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": names.role},
        "subjects": [
            {"kind": "ServiceAccount", "name": names.service_account, "namespace": owner.namespace}
        ],
    }


def peer_args(role: Role, owner: Owner, spec: BallSessionSpec) -> list[str]:
    """The peer's command-line arguments (see docs/CONTRACTS.md)."""
    args = [
        "offer" if role == "server" else "answer",
        "--signaling",
        "configmap",
        "--configmap",
        Names.of(owner.name).configmap,
        "--namespace",
        owner.namespace,
        "--connect-timeout",
        str(spec.signaling_timeout_seconds),
        "--ice-servers",
        json.dumps([s.model_dump(exclude_none=True) for s in spec.ice_servers]),
    ]
    if role == "server":
        args += spec.session().to_peer_args()
    return args


def _security_context() -> dict[str, Any]:
    return {
        "runAsNonRoot": True,
        "runAsUser": PEER_USER_ID,
        "runAsGroup": PEER_USER_ID,
        "readOnlyRootFilesystem": True,
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def pod(
    role: Role,
    owner: Owner,
    spec: BallSessionSpec,
    *,
    default_image: str,
    pull_policy: str = "IfNotPresent",
) -> Manifest:
    """A peer Pod: run once, restricted Pod Security, its own ServiceAccount token."""
    names = Names.of(owner.name)
    deadline = spec.active_deadline_seconds
    pod_spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "serviceAccountName": names.service_account,
        "automountServiceAccountToken": True,  # the peers patch/watch the signaling ConfigMap
        "enableServiceLinks": False,
        "terminationGracePeriodSeconds": 10,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": PEER_USER_ID,
            "runAsGroup": PEER_USER_ID,
            "fsGroup": PEER_USER_ID,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": [
            {
                "name": "peer",
                "image": spec.image or default_image,
                "imagePullPolicy": pull_policy,
                "command": ["python", "-m", f"peers.{role}"],
                "args": peer_args(role, owner, spec),
                "env": [{"name": "PYTHONUNBUFFERED", "value": "1"}],
                "resources": spec.resources.model_dump(),
                "securityContext": _security_context(),
                "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
            }
        ],
        "volumes": [{"name": "tmp", "emptyDir": {"medium": "Memory", "sizeLimit": "64Mi"}}],
    }
    if deadline:
        # Backstop only: the operator fails the session at the deadline itself.
        pod_spec["activeDeadlineSeconds"] = deadline + 60
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": _metadata(owner, names.pod(role), role),
        "spec": pod_spec,
    }


API_SERVER_PORTS = (443, 6443)
"""The API server behind the `kubernetes` Service (443) or on the control plane (6443)."""


def network_policy(owner: Owner, spec: BallSessionSpec) -> Manifest:
    """Only this session's two peers reach each other (UDP, any port: ICE picks ephemeral
    ones); they may reach DNS and the API server (signaling), and nothing else reaches them.
    With iceServers the peers must reach STUN/TURN servers anywhere, so egress is open."""
    session = {SESSION_LABEL: owner.name, "app.kubernetes.io/component": "peer"}
    peers = [{"podSelector": {"matchLabels": session}}]
    egress: list[dict[str, Any]] = [
        {"to": peers, "ports": [{"protocol": "UDP"}]},
        {"ports": [{"protocol": p, "port": 53} for p in ("UDP", "TCP")]},
        {"ports": [{"protocol": "TCP", "port": port} for port in API_SERVER_PORTS]},
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
    owner: Owner, spec: BallSessionSpec, *, default_image: str, pull_policy: str = "IfNotPresent"
) -> list[Manifest]:
    """Every child in creation order (the ConfigMap and RBAC before the pods that use them)."""
    return [
        configmap(owner),
        service_account(owner),
        role(owner),
        role_binding(owner),
        network_policy(owner, spec),
        pod("server", owner, spec, default_image=default_image, pull_policy=pull_policy),
        pod("client", owner, spec, default_image=default_image, pull_policy=pull_policy),
    ]
