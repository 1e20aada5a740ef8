"""Addresses of the local cluster."""

from __future__ import annotations

from pathlib import Path

import pytest

from localcluster.layout import Layout


def test_the_control_plane_and_each_node_have_a_segment_of_their_own() -> None:
    layout = Layout(state=Path("/tmp/x"))
    assert layout.host_ip == "10.213.0.1"
    assert layout.api_ip == "10.213.0.2"
    assert layout.api_url == "https://10.213.0.2:6443"
    assert layout.kubernetes_service_ip == "10.0.0.1"
    first, second = layout.nodes
    assert (first.name, first.bridge, first.cidr, first.address) == (
        "rebound-node",
        "rb0-1",
        "10.213.1.0/24",
        "10.213.1.1",
    )
    assert (second.name, second.bridge, second.cidr, second.address) == (
        "rebound-node-2",
        "rb0-2",
        "10.213.2.0/24",
        "10.213.2.1",
    )
    assert (first.component, second.component) == ("process-node", "process-node-2")
    assert first.pod_ip(0) == "10.213.1.2" and second.pod_ip(252) == "10.213.2.254"
    assert layout.node("rebound-node-2") == second
    with pytest.raises(KeyError):
        layout.node("rebound-node-3")


def test_a_nodes_range_ends_before_its_broadcast_address() -> None:
    node = Layout(state=Path("/tmp/x"), node_count=1).nodes[0]
    assert node.max_pods == 253
    assert node.pod_ip(252) == "10.213.1.254"
    with pytest.raises(ValueError, match="exhausted"):
        node.pod_ip(253)


def test_the_node_count_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REBOUND_CLUSTER_NODES", "3")
    assert [n.name for n in Layout.default().nodes] == [
        "rebound-node",
        "rebound-node-2",
        "rebound-node-3",
    ]
    monkeypatch.setenv("REBOUND_CLUSTER_NODES", "0")
    assert len(Layout.default().nodes) == 1
    with pytest.raises(ValueError, match="no room"):
        _ = Layout(state=Path("/tmp/x"), network="10.9.0.0/23", node_count=2).nodes


def test_a_volume_over_the_checkout_is_detected() -> None:
    from localcluster.sandbox import shadowed_paths

    keep = ["/tmp/clone", "/tmp/clone/.venv", "/usr/lib/python3"]
    assert shadowed_paths(keep, ["/tmp"]) == ["/tmp/clone", "/tmp/clone/.venv"]
    assert shadowed_paths(keep, ["/tmp/clone"]) == ["/tmp/clone", "/tmp/clone/.venv"]
    assert shadowed_paths(keep, ["/tmp/other", "/var/run/secrets"]) == []
