"""Where the peers may run (scheduling fields of the peer pods) and where they did run
(node and address read back from the pods): pure rules, table-tested."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from rebound_operator.children import Owner, peer_labels, pod
from rebound_operator.placement import (
    HOSTNAME_TOPOLOGY,
    Landing,
    placement_status,
    scheduling,
    valid_ip,
    valid_node_name,
)
from rebound_operator.spec import InvalidSpec, parse_spec

OWNER = Owner("demo", "team-a", "uid-1")
SELECTOR = {"matchLabels": {"rebound.dev/session": "demo", "app.kubernetes.io/component": "peer"}}
ZONE_A = {
    "nodeAffinity": {
        "requiredDuringSchedulingIgnoredDuringExecution": {
            "nodeSelectorTerms": [
                {
                    "matchExpressions": [
                        {"key": "topology.kubernetes.io/zone", "operator": "In", "values": ["a"]}
                    ]
                }
            ]
        }
    }
}
THEIR_ANTI = {
    "podAntiAffinity": {
        "requiredDuringSchedulingIgnoredDuringExecution": [
            {"labelSelector": {"matchLabels": {"app": "db"}}, "topologyKey": HOSTNAME_TOPOLOGY}
        ]
    }
}
OURS = {"labelSelector": SELECTOR, "topologyKey": HOSTNAME_TOPOLOGY}


def fields(raw: dict[str, Any], role: str = "server") -> dict[str, Any]:
    return scheduling(parse_spec(raw), role, SELECTOR)


@pytest.mark.parametrize(
    ("raw", "role", "expected"),
    [
        ({}, "server", {}),
        ({"placement": "Any", "server": {"affinity": ZONE_A}}, "client", {}),
        ({"server": {"affinity": ZONE_A}}, "server", {"affinity": ZONE_A}),
        (
            {"placement": "SeparateNodes"},
            "client",
            {
                "affinity": {
                    "podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [OURS]}
                }
            },
        ),
        (
            {"placement": "SameNode"},
            "server",
            {
                "affinity": {
                    "podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [OURS]}
                }
            },
        ),
        (
            # The user's node affinity stays; the anti-affinity term is added next to it.
            {"placement": "SeparateNodes", "server": {"affinity": ZONE_A}},
            "server",
            {
                "affinity": {
                    **ZONE_A,
                    "podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [OURS]},
                }
            },
        ),
        (
            # The user's own required anti-affinity terms stay (required terms are ANDed).
            {"placement": "SeparateNodes", "client": {"affinity": THEIR_ANTI}},
            "client",
            {
                "affinity": {
                    "podAntiAffinity": {
                        "requiredDuringSchedulingIgnoredDuringExecution": [
                            THEIR_ANTI["podAntiAffinity"][
                                "requiredDuringSchedulingIgnoredDuringExecution"
                            ][0],
                            OURS,
                        ]
                    }
                }
            },
        ),
        (
            {
                "server": {
                    "nodeSelector": {"pool": "edge"},
                    "tolerations": [
                        {
                            "key": "dedicated",
                            "operator": "Equal",
                            "value": "media",
                            "effect": "NoSchedule",
                        },
                        {"operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 30},
                    ],
                    "priorityClassName": "media-tests",
                }
            },
            "server",
            {
                "nodeSelector": {"pool": "edge"},
                "tolerations": [
                    {
                        "key": "dedicated",
                        "operator": "Equal",
                        "value": "media",
                        "effect": "NoSchedule",
                    },
                    {"operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 30},
                ],
                "priorityClassName": "media-tests",
            },
        ),
    ],
    ids=[
        "nothing",
        "other-role-only",
        "own-affinity",
        "separate-nodes",
        "same-node",
        "separate-nodes-plus-node-affinity",
        "separate-nodes-plus-own-anti-affinity",
        "selector-tolerations-priority",
    ],
)
def test_scheduling_fields(raw: dict[str, Any], role: str, expected: dict[str, Any]) -> None:
    assert fields(raw, role) == expected


def test_merging_never_changes_the_spec() -> None:
    raw = {"placement": "SeparateNodes", "server": {"affinity": copy.deepcopy(THEIR_ANTI)}}
    spec = parse_spec(raw)
    for _ in range(3):
        scheduling(spec, "server", SELECTOR)
    assert spec.server.affinity == THEIR_ANTI


def test_the_peer_pods_carry_their_own_scheduling_and_resources() -> None:
    spec = parse_spec(
        {
            "placement": "SeparateNodes",
            "resources": {"requests": {"cpu": "250m"}},
            "server": {"nodeSelector": {"pool": "a"}, "resources": {"limits": {"cpu": "4"}}},
            "client": {"nodeSelector": {"pool": "b"}, "priorityClassName": "high"},
        }
    )
    server = pod("server", OWNER, spec, default_image="peer:1")["spec"]
    client = pod("client", OWNER, spec, default_image="peer:1")["spec"]
    assert server["nodeSelector"] == {"pool": "a"} and client["nodeSelector"] == {"pool": "b"}
    assert "priorityClassName" not in server and client["priorityClassName"] == "high"
    assert "nodeName" not in server and "nodeName" not in client
    # Both carry the anti-affinity term, on the labels both pods (and only they) have.
    for peer_spec in (server, client):
        term = peer_spec["affinity"]["podAntiAffinity"][
            "requiredDuringSchedulingIgnoredDuringExecution"
        ][0]
        assert term["labelSelector"]["matchLabels"] == peer_labels(OWNER)
    server_pod = pod("server", OWNER, spec, default_image="peer:1")
    labels = server_pod["metadata"]["labels"]
    assert all(labels[k] == v for k, v in peer_labels(OWNER).items())
    # Per-peer resources: what the peer gives, else the top level (itself defaulted).
    assert server["containers"][0]["resources"] == {
        "requests": {"cpu": "250m"},
        "limits": {"cpu": "4"},
    }
    assert client["containers"][0]["resources"] == {
        "requests": {"cpu": "250m"},
        "limits": {"cpu": "2", "memory": "1Gi"},
    }


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"placement": "Elsewhere"}, "spec.placement"),
        ({"server": {"nodeName": "n1"}}, "spec.server.nodeName: Extra inputs"),
        ({"client": {"nodeSelector": {"bad key!": "x"}}}, "spec.client.nodeSelector"),
        ({"server": {"tolerations": [{"operator": "Exists", "value": "x"}]}}, "takes no value"),
        ({"server": {"tolerations": [{"effect": "NoSchedule"}]}}, "without a key"),
        ({"server": {"priorityClassName": "Not_A_Name"}}, "spec.server.priorityClassName"),
        ({"client": {"resources": {"requests": {"cpu": "1"}, "claims": []}}}, "claims"),
        ({"server": {"affinity": {"podAffinity": {"x": "y" * 20_000}}}}, "larger than"),
    ],
)
def test_bad_placement_is_one_readable_line(raw: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidSpec, match=message):
        parse_spec(raw)


@pytest.mark.parametrize(
    ("pod_manifest", "expected"),
    [
        (None, Landing()),
        ({}, Landing()),
        ({"spec": {"nodeName": "node-1"}}, Landing("node-1", None)),
        (
            {"spec": {"nodeName": "node-1"}, "status": {"podIP": "10.0.0.7"}},
            Landing("node-1", "10.0.0.7"),
        ),
        ({"status": {"podIP": "fd00::0007"}}, Landing(None, "fd00::7")),
        ({"spec": {"nodeName": "Node_1"}, "status": {"podIP": "10.0.0.999"}}, Landing()),
        ({"spec": {"nodeName": "n" * 254}, "status": {"podIP": "x" * 1000}}, Landing()),
        ({"spec": {"nodeName": 7}, "status": {"podIP": ["10.0.0.1"]}}, Landing()),
        ({"spec": "garbage", "status": "garbage"}, Landing()),
    ],
)
def test_landing_reads_only_valid_names_and_addresses(pod_manifest: Any, expected: Landing) -> None:
    assert Landing.of(pod_manifest) == expected


def test_validators_at_their_bounds() -> None:
    assert valid_node_name("a" * 63 + "." + "b" * 63) is not None
    assert valid_node_name("") is None and valid_node_name("-node") is None
    assert valid_ip("::ffff:10.0.0.1") == "::ffff:a00:1"
    assert valid_ip("10.0.0.1\n") is None


def test_placement_status_names_only_what_is_known() -> None:
    assert placement_status(Landing(), Landing()) == {}
    assert placement_status(Landing("n1", "10.0.0.1"), Landing("n2")) == {
        "serverNode": "n1",
        "serverPodIP": "10.0.0.1",
        "clientNode": "n2",
    }


def test_the_status_records_each_peers_node_and_address() -> None:
    from datetime import UTC, datetime

    from rebound_operator.lifecycle import Observation, PodView, Signals, evaluate

    def bound(name: str, node: str, ip: str | None) -> PodView:
        status: dict[str, Any] = {"phase": "Running" if ip else "Pending"}
        if ip:
            status["podIP"] = ip
            status["containerStatuses"] = [{"state": {"running": {}}}]
        return PodView.from_manifest(
            {"metadata": {"name": name}, "spec": {"nodeName": node}, "status": status}
        )

    now = datetime(2026, 1, 1, tzinfo=UTC)
    obs = Observation(
        now=now,
        start=now,
        server=bound("s-server", "node-a", "10.1.0.5"),
        client=bound("s-client", "node-b", None),
        signals=Signals(),
    )
    status = evaluate(parse_spec({"placement": "SeparateNodes"}), obs, {}).status
    assert (status["serverNode"], status["serverPodIP"], status["clientNode"]) == (
        "node-a",
        "10.1.0.5",
        "node-b",
    )
    assert "clientPodIP" not in status
