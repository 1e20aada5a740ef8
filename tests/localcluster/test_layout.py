"""Addresses of the local cluster."""

from __future__ import annotations

from pathlib import Path

import pytest

from localcluster.layout import Layout


def test_addresses_are_on_one_bridge_network() -> None:
    layout = Layout(state=Path("/tmp/x"))
    assert layout.host_ip == "10.213.0.1"
    assert layout.api_ip == "10.213.0.2"
    assert layout.api_url == "https://10.213.0.2:6443"
    assert layout.kubernetes_service_ip == "10.0.0.1"
    assert layout.pod_ip(0) == "10.213.1.1"
    assert layout.pod_ip(300) == "10.213.2.45"


def test_the_pod_range_ends_before_the_broadcast_address() -> None:
    layout = Layout(state=Path("/tmp/x"), network="10.9.0.0/23")
    assert layout.pod_ip(253) == "10.9.1.254"
    with pytest.raises(ValueError, match="exhausted"):
        layout.pod_ip(254)


def test_a_volume_over_the_checkout_is_detected() -> None:
    from localcluster.sandbox import shadowed_paths

    keep = ["/tmp/clone", "/tmp/clone/.venv", "/usr/lib/python3"]
    assert shadowed_paths(keep, ["/tmp"]) == ["/tmp/clone", "/tmp/clone/.venv"]
    assert shadowed_paths(keep, ["/tmp/clone"]) == ["/tmp/clone", "/tmp/clone/.venv"]
    assert shadowed_paths(keep, ["/tmp/other", "/var/run/secrets"]) == []
