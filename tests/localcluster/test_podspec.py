"""The kubelet rules the process node applies to a Pod (pure)."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from localcluster.images import ImageConfig
from localcluster.podspec import (
    ConfigError,
    ContainerView,
    ServiceEndpoint,
    Unsupported,
    exit_code_of,
    expand,
    plan,
    pod_status,
    running,
    terminated,
)

IMAGE = ImageConfig(
    entrypoint=["python", "-m", "app"],
    cmd=["--help"],
    user="10001:10001",
    workdir="/tmp",
    env={"PATH": "/venv/bin:/usr/bin", "PYTHONSAFEPATH": "1"},
)
SERVICE = ServiceEndpoint("10.213.0.2", 6443)
OBJECTS: dict[tuple[str, str, str], dict[str, Any]] = {
    ("ConfigMap", "ns", "cfg"): {"data": {"mode": "fast"}},
    ("Secret", "ns", "turn"): {"data": {"password": base64.b64encode(b"s3cret").decode()}},
}


def lookup(kind: str, namespace: str, name: str) -> dict[str, Any] | None:
    return OBJECTS.get((kind, namespace, name))


def pod(container: dict[str, Any], **spec: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": "p1", "namespace": "ns", "uid": "u-1", "labels": {"app": "a"}},
        "spec": {"containers": [{"name": "c", "image": "rebound-peer:0.1.0", **container}], **spec},
        "status": {"podIP": "10.213.1.7", "hostIP": "10.213.0.1"},
    }


def test_without_command_or_args_the_image_runs_as_built() -> None:
    assert plan(pod({}), IMAGE, lookup, SERVICE).argv == ["python", "-m", "app", "--help"]


def test_args_replace_cmd_and_command_replaces_entrypoint() -> None:
    assert plan(pod({"args": ["x"]}), IMAGE, lookup, SERVICE).argv == ["python", "-m", "app", "x"]
    only_command = plan(pod({"command": ["sleep"]}), IMAGE, lookup, SERVICE)
    assert only_command.argv == ["sleep"]


def test_env_sources_in_order_with_variable_expansion() -> None:
    container = {
        "env": [
            {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {"name": "IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
            {"name": "APP", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}}},
            {"name": "MODE", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "mode"}}},
            {"name": "PASS", "valueFrom": {"secretKeyRef": {"name": "turn", "key": "password"}}},
            {"name": "WHO", "value": "$(POD)@$(IP) $$(POD) $(NOPE)"},
        ],
        "args": ["--name", "$(POD)"],
    }
    result = plan(pod(container), IMAGE, lookup, SERVICE)
    env = result.env
    assert (env["POD"], env["IP"], env["APP"], env["MODE"]) == ("p1", "10.213.1.7", "a", "fast")
    assert env["PASS"] == "s3cret"
    assert env["WHO"] == "p1@10.213.1.7 $(POD) $(NOPE)"
    assert env["KUBERNETES_SERVICE_HOST"] == "10.213.0.2"
    assert env["KUBERNETES_SERVICE_PORT"] == "6443"
    assert env["HOSTNAME"] == "p1"
    assert env["PATH"] == "/venv/bin:/usr/bin"
    assert result.argv[-2:] == ["--name", "p1"]


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ({"secretKeyRef": {"name": "missing", "key": "k"}}, 'secret "missing" not found'),
        ({"configMapKeyRef": {"name": "cfg", "key": "nope"}}, "couldn't find key nope"),
    ],
)
def test_missing_references_are_config_errors(source: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        plan(pod({"env": [{"name": "X", "valueFrom": source}]}), IMAGE, lookup, SERVICE)


def test_optional_references_may_be_missing() -> None:
    source = {"secretKeyRef": {"name": "missing", "key": "k", "optional": True}}
    result = plan(pod({"env": [{"name": "X", "valueFrom": source}]}), IMAGE, lookup, SERVICE)
    assert "X" not in result.env


def test_identity_comes_from_container_then_pod_then_image() -> None:
    assert plan(pod({}), IMAGE, lookup, SERVICE).uid == 10001
    from_pod = plan(pod({}, securityContext={"runAsUser": 2000}), IMAGE, lookup, SERVICE)
    assert (from_pod.uid, from_pod.gid) == (2000, 10001)
    container = {"securityContext": {"runAsUser": 3000, "allowPrivilegeEscalation": False}}
    from_container = plan(
        pod(container, securityContext={"runAsUser": 2000}), IMAGE, lookup, SERVICE
    )
    assert from_container.uid == 3000 and from_container.no_new_privs


def test_run_as_non_root_refuses_root() -> None:
    root_image = ImageConfig(entrypoint=["x"], user="")
    with pytest.raises(ConfigError, match="runAsNonRoot and image will run as root"):
        plan(pod({}, securityContext={"runAsNonRoot": True}), root_image, lookup, SERVICE)
    named = ImageConfig(entrypoint=["x"], user="app")
    with pytest.raises(ConfigError, match="non-numeric user"):
        plan(pod({}, securityContext={"runAsNonRoot": True}), named, lookup, SERVICE)


def test_pods_the_node_cannot_run_are_refused_plainly() -> None:
    with pytest.raises(Unsupported, match="init"):
        plan(pod({}, initContainers=[{"name": "i"}]), IMAGE, lookup, SERVICE)
    two = pod({})
    two["spec"]["containers"].append({"name": "d", "image": "x"})
    with pytest.raises(Unsupported, match="exactly one container"):
        plan(two, IMAGE, lookup, SERVICE)


def test_expand_leaves_unknown_references() -> None:
    assert expand("$(A)-$(B)-$$", {"A": "1"}) == "1-$(B)-$"


def test_exit_codes_of_signalled_processes() -> None:
    assert exit_code_of(-9) == 137
    assert exit_code_of(-15) == 143
    assert exit_code_of(3) == 3
    assert terminated(137, "a", "b")["terminated"]["signal"] == 9
    assert terminated(0, "a", "b")["terminated"]["reason"] == "Completed"
    assert terminated(1, "a", "b")["terminated"]["reason"] == "Error"


def test_status_as_a_kubelet_reports_it() -> None:
    view = ContainerView("c", "rebound-peer:0.1.0", running("2026-01-01T00:00:00Z"))
    status = pod_status(
        "Running",
        view,
        host_ip="10.213.0.1",
        pod_ip="10.213.1.7",
        start_time="2026-01-01T00:00:00Z",
        sandbox_ready=True,
    )
    conditions = {c["type"]: c["status"] for c in status["conditions"]}
    assert conditions == {
        "PodReadyToStartContainers": "True",
        "Initialized": "True",
        "Ready": "True",
        "ContainersReady": "True",
        "PodScheduled": "True",
    }
    assert status["podIP"] == "10.213.1.7" and status["podIPs"] == [{"ip": "10.213.1.7"}]
    assert status["containerStatuses"][0]["ready"] is True
    done = pod_status(
        "Succeeded",
        ContainerView("c", "i", terminated(0, "a", "b")),
        host_ip="h",
        pod_ip="p",
        start_time="s",
        sandbox_ready=True,
    )
    ready = next(c for c in done["conditions"] if c["type"] == "Ready")
    assert ready["status"] == "False" and ready["reason"] == "PodCompleted"
