"""NetworkPolicy semantics of the process node (pure): who may talk to whom, and the table."""

from __future__ import annotations

import os
import shutil
import subprocess
from typing import Any

import pytest

from localcluster.netpol import EGRESS, INGRESS, Allow, PodAddress, allowed, ruleset, selects
from localcluster.policies import apply_table

SESSION = {"rebound.dev/session": "demo", "app.kubernetes.io/component": "peer"}
SERVER = PodAddress("s", "demo-server", {**SESSION, "role": "server"}, "10.0.1.1")
CLIENT = PodAddress("s", "demo-client", {**SESSION, "role": "client"}, "10.0.1.2")
STRANGER = PodAddress("s", "web", {"app": "web"}, "10.0.1.3")
DNS = PodAddress("kube-system", "coredns", {"k8s-app": "kube-dns"}, "10.0.2.1")
PODS = [SERVER, CLIENT, STRANGER, DNS]
NAMESPACES = {"s": {}, "kube-system": {"kubernetes.io/metadata.name": "kube-system"}}


def policy(spec: dict[str, Any], namespace: str = "s") -> dict[str, Any]:
    return {"metadata": {"name": "p", "namespace": namespace}, "spec": spec}


SESSION_POLICY = policy(
    {
        "podSelector": {"matchLabels": SESSION},
        "policyTypes": ["Ingress", "Egress"],
        "ingress": [
            {"from": [{"podSelector": {"matchLabels": SESSION}}], "ports": [{"protocol": "UDP"}]}
        ],
        "egress": [
            {"to": [{"podSelector": {"matchLabels": SESSION}}], "ports": [{"protocol": "UDP"}]},
            {
                "to": [
                    {
                        "namespaceSelector": {
                            "matchLabels": {"kubernetes.io/metadata.name": "kube-system"}
                        },
                        "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}},
                    }
                ],
                "ports": [{"protocol": "UDP", "port": 53}],
            },
            {"to": [{"ipBlock": {"cidr": "10.9.0.2/32"}}], "ports": [{"port": 6443}]},
        ],
    }
)


def test_selectors() -> None:
    labels = {"a": "1", "b": "2"}
    assert selects({}, labels)
    assert not selects(None, labels)
    assert selects({"matchLabels": {"a": "1"}}, labels)
    assert not selects({"matchLabels": {"a": "2"}}, labels)
    assert selects({"matchExpressions": [{"key": "a", "operator": "In", "values": ["1"]}]}, labels)
    assert not selects({"matchExpressions": [{"key": "c", "operator": "Exists"}]}, labels)
    assert selects({"matchExpressions": [{"key": "c", "operator": "DoesNotExist"}]}, labels)
    assert not selects(
        {"matchExpressions": [{"key": "a", "operator": "NotIn", "values": ["1"]}]}, labels
    )
    assert not selects({"matchExpressions": [{"key": "a", "operator": "Bogus"}]}, labels)


def test_a_pod_no_policy_selects_is_open_both_ways() -> None:
    assert allowed(STRANGER, [SESSION_POLICY], PODS, NAMESPACES, INGRESS) is None
    assert allowed(STRANGER, [SESSION_POLICY], PODS, NAMESPACES, EGRESS) is None
    assert "-j DROP" not in ruleset(None, None)


def test_the_session_policy_lets_only_its_peers_dns_and_the_api_server_through() -> None:
    ingress = allowed(SERVER, [SESSION_POLICY], PODS, NAMESPACES, INGRESS)
    assert ingress == [Allow(("10.0.1.1/32", "10.0.1.2/32"), (), "UDP", None)]
    egress = allowed(SERVER, [SESSION_POLICY], PODS, NAMESPACES, EGRESS)
    assert egress == [
        Allow(("10.0.1.1/32", "10.0.1.2/32"), (), "UDP", None),
        Allow(("10.0.2.1/32",), (), "UDP", (53, 53)),
        Allow(("10.9.0.2/32",), (), "TCP", (6443, 6443)),
    ]
    table = ruleset(ingress, egress)
    assert "-A INPUT -s 10.0.1.2/32 -p udp -j ACCEPT" in table
    assert "-A OUTPUT -d 10.9.0.2/32 -p tcp --dport 6443 -j ACCEPT" in table
    assert table.index("-A INPUT -j DROP") > table.index("-A INPUT -s 10.0.1.2/32")
    assert "-A INPUT -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT" in table


def test_a_default_deny_isolates_with_no_rule_and_policies_add_up() -> None:
    deny = policy(
        {
            "podSelector": {"matchLabels": {"app.kubernetes.io/component": "peer"}},
            "policyTypes": ["Ingress", "Egress"],
        }
    )
    assert allowed(CLIENT, [deny], PODS, NAMESPACES, EGRESS) == []
    both = allowed(CLIENT, [deny, SESSION_POLICY], PODS, NAMESPACES, EGRESS)
    assert both is not None and len(both) == 3
    elsewhere = policy({"podSelector": {}, "policyTypes": ["Egress"]}, namespace="other")
    assert allowed(CLIENT, [elsewhere], PODS, NAMESPACES, EGRESS) is None


def test_except_blocks_and_named_ports() -> None:
    spec = {
        "podSelector": {},
        "policyTypes": ["Egress"],
        "egress": [
            {"to": [{"ipBlock": {"cidr": "10.0.0.0/8", "except": ["10.0.1.0/24"]}}]},
            {"ports": [{"protocol": "TCP", "port": "http"}]},
        ],
    }
    egress = allowed(STRANGER, [policy(spec)], PODS, NAMESPACES, EGRESS)
    assert egress == [Allow(("10.0.0.0/8",), ("10.0.1.0/24",))]  # the named port allows nothing
    table = ruleset(None, egress)
    assert ":RB-O0 - [0:0]" in table
    assert "-A RB-O0 -d 10.0.1.0/24 -j RETURN" in table
    assert "-A OUTPUT -d 10.0.0.0/8 -j RB-O0" in table


@pytest.mark.skipif(
    os.geteuid() != 0 or not shutil.which("iptables-restore"), reason="needs root and iptables"
)
def test_iptables_takes_the_table_in_a_network_namespace() -> None:
    name = "rbtest-netpol"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        egress = [
            Allow(("10.0.0.0/8",), ("10.0.1.0/24",)),
            Allow(("10.9.0.2/32",), (), "TCP", (6443, 6443)),
        ]
        apply_table(name, ruleset([Allow(None, (), "UDP", (1000, 2000))], egress))
        rules = subprocess.run(
            ["ip", "netns", "exec", name, "iptables", "-S"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        assert "-A INPUT -p udp -m udp --dport 1000:2000 -j ACCEPT" in rules
        assert "-A RB-O0 -d 10.0.1.0/24 -j RETURN" in rules
        assert "-A OUTPUT -j DROP" in rules
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)
