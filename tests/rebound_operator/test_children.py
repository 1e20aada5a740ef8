import json
from typing import Any, cast

import pytest
from rebound_operator.children import (
    CHILD_SELECTOR,
    SESSION_LABEL,
    VIEW_PORT,
    ApiRoute,
    Names,
    Owner,
    Role,
    all_children,
    configmap,
    live_view_hint,
    network_policy,
    pod,
    role,
    role_binding,
    service_account,
)
from rebound_operator.spec import parse_spec

from peers import cli
from peers import client as peer_client
from peers import server as peer_server

OWNER = Owner("demo", "team-a", "uid-123")
TURN = {
    "urls": ["turn:t:3478"],
    "username": "u",
    "credentialSecretRef": {"name": "turn-secret", "key": "password"},
}
SPEC = parse_spec(
    {
        "width": 800,
        "height": 600,
        "fps": 25,
        "frames": 0,
        "durationSeconds": 12,
        "signalingTimeoutSeconds": 45,
        "activeDeadlineSeconds": 600,
        "iceServers": [{"urls": ["stun:s:3478"]}, TURN],
    }
)


def test_names_are_fixed_per_session_and_role() -> None:
    names = Names.of("demo")
    assert (names.configmap("server"), names.configmap("client")) == (
        "demo-server-signaling",
        "demo-client-signaling",
    )
    assert (names.account("server"), names.account("client")) == ("demo-server", "demo-client")
    assert (names.server_pod, names.client_pod, names.network_policy) == (
        "demo-server",
        "demo-client",
        "demo-peers",
    )


def test_every_child_is_owned_labelled_and_namespaced() -> None:
    children = all_children(OWNER, SPEC, default_image="peer:1")
    assert [(c["kind"], c["metadata"]["name"]) for c in children] == [
        ("ConfigMap", "demo-server-signaling"),
        ("ConfigMap", "demo-client-signaling"),
        ("ServiceAccount", "demo-server"),
        ("ServiceAccount", "demo-client"),
        ("Role", "demo-server"),
        ("Role", "demo-client"),
        ("RoleBinding", "demo-server"),
        ("RoleBinding", "demo-client"),
        ("NetworkPolicy", "demo-peers"),
        ("Pod", "demo-server"),
        ("Pod", "demo-client"),
    ]
    for child in children:
        meta = child["metadata"]
        assert meta["namespace"] == "team-a"
        assert meta["labels"][SESSION_LABEL] == "demo"
        assert "app.kubernetes.io/instance" not in meta["labels"]  # never GitOps tracking labels
        # every child matches the operator's server-side watch selector
        for term in CHILD_SELECTOR.split(","):
            key, _, value = term.partition("=")
            assert key in meta["labels"] and (not value or meta["labels"][key] == value)
        (ref,) = meta["ownerReferences"]
        assert ref == {
            "apiVersion": "rebound.dev/v1alpha1",
            "kind": "BallSession",
            "name": "demo",
            "uid": "uid-123",
            "controller": True,
            "blockOwnerDeletion": True,
        }


def test_configmaps_start_empty() -> None:
    assert configmap(OWNER, "server")["data"] == configmap(OWNER, "client")["data"] == {}


@pytest.mark.parametrize(("which", "other"), [("server", "client"), ("client", "server")])
def test_each_role_may_write_only_its_own_configmap(which: str, other: str) -> None:
    mine = cast(Role, which)
    rules = role(OWNER, mine)["rules"]
    assert rules == [
        {
            "apiGroups": [""],
            "resources": ["configmaps"],
            "resourceNames": [f"demo-{which}-signaling"],
            "verbs": ["get", "watch", "patch"],
        },
        {
            "apiGroups": [""],
            "resources": ["configmaps"],
            "resourceNames": [f"demo-{other}-signaling"],
            "verbs": ["get", "watch"],
        },
    ]
    binding = role_binding(OWNER, mine)
    assert binding["metadata"]["name"] == binding["roleRef"]["name"] == f"demo-{which}"
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": f"demo-{which}", "namespace": "team-a"}
    ]
    account = service_account(OWNER, mine)
    assert account["metadata"]["name"] == f"demo-{which}"
    assert account["automountServiceAccountToken"] is False
    assert (
        pod(mine, OWNER, SPEC, default_image="x")["spec"]["serviceAccountName"] == f"demo-{which}"
    )


@pytest.mark.parametrize("which", ["server", "client"])
def test_pods_meet_restricted_pod_security_without_fixed_ids(which: str) -> None:
    manifest = pod(cast(Role, which), OWNER, SPEC, default_image="peer:1")
    spec = manifest["spec"]
    assert manifest["metadata"]["name"] == f"demo-{which}"
    assert spec["restartPolicy"] == "Never"
    assert spec["securityContext"] == {
        "runAsNonRoot": True,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    (container,) = spec["containers"]
    sc = container["securityContext"]
    assert sc["runAsNonRoot"] and sc["readOnlyRootFilesystem"]
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert sc["seccompProfile"] == {"type": "RuntimeDefault"}
    # the image's numeric USER is used: no fixed UID/GID (OpenShift's restricted-v2)
    for key in ("runAsUser", "runAsGroup", "fsGroup"):
        assert key not in sc and key not in spec["securityContext"]
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
    assert (parsed.signaling, parsed.configmap, parsed.peer_configmap, parsed.namespace) == (
        "configmap",
        "demo-server-signaling",
        "demo-client-signaling",
        "team-a",
    )
    assert parsed.connect_timeout == 45 + 300  # signaling + the operator's pending timeout
    assert json.loads(parsed.ice_servers) == [
        {"urls": ["stun:s:3478"]},
        {"urls": ["turn:t:3478"], "username": "u"},
    ]


def test_client_args_are_accepted_by_the_client_cli() -> None:
    args = pod("client", OWNER, SPEC, default_image="x")["spec"]["containers"][0]["args"]
    parsed = peer_client.build_parser().parse_args(args)
    peer_client.validate_args(parsed)
    assert parsed.role == "answer"
    assert (parsed.configmap, parsed.peer_configmap) == (
        "demo-client-signaling",
        "demo-server-signaling",
    )
    assert "--width" not in args  # the client learns everything from the SDP and the frames


def test_turn_credentials_come_from_the_secret_never_from_args() -> None:
    for which in ("server", "client"):
        manifest = pod(cast(Role, which), OWNER, SPEC, default_image="x")
        (container,) = manifest["spec"]["containers"]
        assert "password" not in json.dumps(container["args"])
        assert "credential" not in json.dumps(container["args"])
        credential = [e for e in container["env"] if e["name"].startswith("REBOUND_ICE")]
        # index 1: the TURN server is the second entry of iceServers
        assert credential == [
            {
                "name": "REBOUND_ICE_CREDENTIAL_1",
                "valueFrom": {"secretKeyRef": {"name": "turn-secret", "key": "password"}},
            }
        ]
        # ... and the peers read it back for exactly that server
        parsed = cli.parse_ice_servers(
            container["args"][container["args"].index("--ice-servers") + 1]
        )
        config = cli.rtc_configuration(parsed, {"REBOUND_ICE_CREDENTIAL_1": "s3cret"})
        assert [s.credential for s in config.iceServers] == [None, "s3cret"]
        assert config.iceServers[1].username == "u"


def test_network_policy_isolates_the_session_peers() -> None:
    plain = parse_spec({})
    routes = [ApiRoute(("10.96.0.1",), (443,)), ApiRoute(("172.18.0.2", "fd00::2"), (6443,))]
    policy = network_policy(OWNER, plain, routes)
    assert policy["metadata"]["name"] == "demo-peers"
    spec = policy["spec"]
    own = {"matchLabels": {SESSION_LABEL: "demo", "app.kubernetes.io/component": "peer"}}
    assert spec["podSelector"] == own
    assert spec["policyTypes"] == ["Ingress", "Egress"]
    assert spec["ingress"] == [{"from": [{"podSelector": own}], "ports": [{"protocol": "UDP"}]}]
    to_peers, dns, service, endpoints = spec["egress"]
    assert to_peers == {"to": [{"podSelector": own}], "ports": [{"protocol": "UDP"}]}
    assert dns["to"] == [
        {
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}},
            "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}},
        }
    ]
    assert {p["port"] for p in dns["ports"]} == {53}
    assert service == {
        "to": [{"ipBlock": {"cidr": "10.96.0.1/32"}}],
        "ports": [{"protocol": "TCP", "port": 443}],
    }
    assert endpoints["to"] == [
        {"ipBlock": {"cidr": "172.18.0.2/32"}},
        {"ipBlock": {"cidr": "fd00::2/128"}},
    ]
    assert endpoints["ports"] == [{"protocol": "TCP", "port": 6443}]
    # every rule names its destination
    assert all(rule.get("to") for rule in spec["egress"])
    # the pods carry exactly the labels the policy selects
    for which in ("server", "client"):
        labels = pod(cast(Role, which), OWNER, plain, default_image="x")["metadata"]["labels"]
        assert own["matchLabels"].items() <= labels.items()


@pytest.mark.parametrize(
    "routes",
    [[], [ApiRoute(("not-an-ip",), (443,))], [ApiRoute(("10.0.0.1",), (0,))]],
)
def test_unknown_api_server_addresses_fall_back_to_its_ports(routes: list[Any]) -> None:
    egress = network_policy(OWNER, parse_spec({}), routes)["spec"]["egress"]
    assert egress[-1] == {"ports": [{"protocol": "TCP", "port": p} for p in (443, 6443)]}


def test_network_policy_opens_egress_for_ice_servers() -> None:
    assert network_policy(OWNER, SPEC)["spec"]["egress"] == [{}]  # SPEC names a TURN server


def test_live_view_runs_the_server_with_a_view_port_and_loosens_nothing() -> None:
    plain = parse_spec({"frames": 300})
    live = parse_spec({"frames": 300, "liveView": True})
    server = pod("server", OWNER, live, default_image="x")["spec"]
    (container,) = server["containers"]
    parsed = peer_server.build_parser().parse_args(container["args"])
    assert parsed.view_port == VIEW_PORT
    assert parsed.view_host == "127.0.0.1"
    # bound to 127.0.0.1 in the pod: only `kubectl port-forward` (localhost in the pod's
    # network namespace) reaches it; --view-host is never given
    assert "--view-host" not in container["args"]
    assert container["ports"] == [{"name": "view", "containerPort": VIEW_PORT, "protocol": "TCP"}]
    before = pod("server", OWNER, plain, default_image="x")["spec"]
    assert "--view-port" not in before["containers"][0]["args"]
    assert server["securityContext"] == before["securityContext"]
    assert container["securityContext"] == before["containers"][0]["securityContext"]
    client = pod("client", OWNER, live, default_image="x")["spec"]["containers"][0]
    assert "--view-port" not in client["args"] and "ports" not in client
    assert network_policy(OWNER, live) == network_policy(OWNER, plain)
    assert live_view_hint(OWNER) == (
        "live view: kubectl -n team-a port-forward pod/demo-server 8090, "
        "then open http://127.0.0.1:8090/ (while the session runs)"
    )
