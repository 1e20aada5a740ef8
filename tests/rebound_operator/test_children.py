import json
from typing import cast

import pytest
from rebound_operator.children import (
    SESSION_LABEL,
    Names,
    Owner,
    Role,
    all_children,
    configmap,
    network_policy,
    pod,
    role,
    role_binding,
    service_account,
)
from rebound_operator.spec import parse_spec

from peers import client as peer_client
from peers import server as peer_server

OWNER = Owner("demo", "team-a", "uid-123")
SPEC = parse_spec(
    {
        "width": 800,
        "height": 600,
        "fps": 25,
        "frames": 0,
        "durationSeconds": 12,
        "signalingTimeoutSeconds": 45,
        "activeDeadlineSeconds": 600,
        "iceServers": [{"urls": ["turn:t:3478"], "username": "u", "credential": "p"}],
    }
)


def test_names_are_fixed_per_session() -> None:
    names = Names.of("demo")
    assert (names.configmap, names.server_pod, names.client_pod) == (
        "demo-signaling",
        "demo-server",
        "demo-client",
    )
    assert names.role == names.role_binding == names.service_account == "demo-peer"


def test_every_child_is_owned_labelled_and_namespaced() -> None:
    children = all_children(OWNER, SPEC, default_image="peer:1")
    assert [c["kind"] for c in children] == [
        "ConfigMap",
        "ServiceAccount",
        "Role",
        "RoleBinding",
        "NetworkPolicy",
        "Pod",
        "Pod",
    ]
    for child in children:
        meta = child["metadata"]
        assert meta["namespace"] == "team-a"
        assert meta["labels"][SESSION_LABEL] == "demo"
        assert "app.kubernetes.io/instance" not in meta["labels"]  # never GitOps tracking labels
        (ref,) = meta["ownerReferences"]
        assert ref == {
            "apiVersion": "rebound.dev/v1alpha1",
            "kind": "BallSession",
            "name": "demo",
            "uid": "uid-123",
            "controller": True,
            "blockOwnerDeletion": True,
        }


def test_configmap_starts_empty() -> None:
    assert configmap(OWNER)["data"] == {}


def test_role_grants_only_the_signaling_configmap() -> None:
    (rule,) = role(OWNER)["rules"]
    assert rule == {
        "apiGroups": [""],
        "resources": ["configmaps"],
        "resourceNames": ["demo-signaling"],
        "verbs": ["get", "watch", "patch"],
    }
    binding = role_binding(OWNER)
    assert binding["roleRef"]["name"] == "demo-peer"
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "demo-peer", "namespace": "team-a"}
    ]
    assert service_account(OWNER)["automountServiceAccountToken"] is False


@pytest.mark.parametrize("which", ["server", "client"])
def test_pods_meet_restricted_pod_security(which: str) -> None:
    manifest = pod(cast(Role, which), OWNER, SPEC, default_image="peer:1")
    spec = manifest["spec"]
    assert manifest["metadata"]["name"] == f"demo-{which}"
    assert spec["restartPolicy"] == "Never"
    assert spec["serviceAccountName"] == "demo-peer"
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    (container,) = spec["containers"]
    sc = container["securityContext"]
    assert sc["runAsNonRoot"] and sc["readOnlyRootFilesystem"]
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert sc["seccompProfile"] == {"type": "RuntimeDefault"}
    assert isinstance(sc["runAsUser"], int) and sc["runAsUser"] > 0
    assert {"name": "tmp", "mountPath": "/tmp"} in container["volumeMounts"]
    assert container["resources"] == {
        "requests": {"cpu": "500m", "memory": "256Mi"},
        "limits": {"cpu": "2", "memory": "1Gi"},
    }
    assert container["image"] == "peer:1"
    assert container["command"] == ["python", "-m", f"peers.{which}"]
    assert spec["activeDeadlineSeconds"] == 660  # the operator's deadline plus a margin


def test_spec_image_overrides_the_default_and_no_deadline_means_none() -> None:
    spec = parse_spec({"image": "mine:2", "frames": 0, "activeDeadlineSeconds": 0})
    manifest = pod("server", OWNER, spec, default_image="peer:1", pull_policy="Always")
    assert manifest["spec"]["containers"][0]["image"] == "mine:2"
    assert manifest["spec"]["containers"][0]["imagePullPolicy"] == "Always"
    assert "activeDeadlineSeconds" not in manifest["spec"]


def test_server_args_are_accepted_by_the_server_cli_and_reproduce_the_spec() -> None:
    args = pod("server", OWNER, SPEC, default_image="x")["spec"]["containers"][0]["args"]
    parsed = peer_server.build_parser().parse_args(args)
    assert peer_server.validate_args(parsed) == SPEC.session()
    assert (parsed.signaling, parsed.configmap, parsed.namespace) == (
        "configmap",
        "demo-signaling",
        "team-a",
    )
    assert parsed.connect_timeout == 45
    assert json.loads(parsed.ice_servers) == [
        {"urls": ["turn:t:3478"], "username": "u", "credential": "p"}
    ]


def test_client_args_are_accepted_by_the_client_cli() -> None:
    args = pod("client", OWNER, SPEC, default_image="x")["spec"]["containers"][0]["args"]
    parsed = peer_client.build_parser().parse_args(args)
    peer_client.validate_args(parsed)
    assert parsed.role == "answer"
    assert parsed.configmap == "demo-signaling"
    assert "--width" not in args  # the client learns everything from the SDP and the frames


def test_network_policy_isolates_the_session_peers() -> None:
    plain = parse_spec({})
    policy = network_policy(OWNER, plain)
    assert policy["metadata"]["name"] == "demo-peers"
    spec = policy["spec"]
    own = {"matchLabels": {SESSION_LABEL: "demo", "app.kubernetes.io/component": "peer"}}
    assert spec["podSelector"] == own
    assert spec["policyTypes"] == ["Ingress", "Egress"]
    assert spec["ingress"] == [{"from": [{"podSelector": own}], "ports": [{"protocol": "UDP"}]}]
    to_peers, dns, api = spec["egress"]
    assert to_peers == {"to": [{"podSelector": own}], "ports": [{"protocol": "UDP"}]}
    assert {p["port"] for p in dns["ports"]} == {53}
    assert {p["port"] for p in api["ports"]} == {443, 6443}
    # the pods carry exactly the labels the policy selects
    for which in ("server", "client"):
        labels = pod(which, OWNER, plain, default_image="x")["metadata"]["labels"]  # type: ignore[arg-type]
        assert own["matchLabels"].items() <= labels.items()


def test_network_policy_opens_egress_for_ice_servers() -> None:
    assert network_policy(OWNER, SPEC)["spec"]["egress"] == [{}]  # SPEC names a TURN server
