"""The operator's Prometheus metrics: pure rules (labels, what counts as finishing), the
sessions-by-phase collector, and the HTTP endpoint serving /metrics beside the probe."""

from __future__ import annotations

import asyncio
import json
import socket
import urllib.request
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from rebound_operator import serving, telemetry
from rebound_operator.settings import ListenAddress


@pytest.mark.parametrize(
    ("method", "url", "labels"),
    [
        ("GET", "https://h:6443/api/v1/namespaces/ns/pods/s-server", ("get", "pods")),
        ("GET", "http://h/api/v1/namespaces/ns/configmaps?watch=true", ("watch", "configmaps")),
        ("GET", "http://h/api/v1/namespaces/ns/configmaps?limit=5", ("list", "configmaps")),
        ("POST", "http://h/api/v1/namespaces/ns/serviceaccounts", ("create", "serviceaccounts")),
        ("DELETE", "http://h/api/v1/namespaces/ns/pods/p", ("delete", "pods")),
        (
            "PATCH",
            "http://h/apis/rebound.dev/v1alpha1/namespaces/ns/ballsessions/s/status",
            ("patch", "ballsessions/status"),
        ),
        (
            "POST",
            "http://h/apis/rbac.authorization.k8s.io/v1/namespaces/ns/rolebindings",
            ("create", "rolebindings"),
        ),
        (
            "GET",
            "http://h/apis/discovery.k8s.io/v1/namespaces/default/endpointslices/kubernetes",
            ("get", "endpointslices"),
        ),
        ("GET", "http://h/api/v1/namespaces/default", ("get", "namespaces")),
        ("PUT", "http://h/api/v1/nodes/n1", ("update", "nodes")),
        ("GET", "http://h/apis/rebound.dev/v1alpha1", ("list", "discovery")),
    ],
)
def test_api_labels_name_the_verb_and_resource_never_the_object(
    method: str, url: str, labels: tuple[str, str]
) -> None:
    assert telemetry.api_labels(method, url) == labels


RESULT = {
    "frames_sent": 300,
    "mean_error_px": 0.02,
    "p95_error_px": 0.04,
    "achieved_fps": 29.9,
}


@pytest.mark.parametrize(
    ("before", "status", "expected"),
    [
        (
            "Connected",
            {
                "phase": "Succeeded",
                "reason": "Completed",
                "metrics": RESULT,
                "startTime": "2026-01-01T10:00:00Z",
                "completionTime": "2026-01-01T10:00:12Z",
            },
            telemetry.Finished("Succeeded", "Completed", 0.02, 0.04, 29.9, 12.0),
        ),
        (
            None,
            {"phase": "Failed", "reason": "InvalidSpec"},
            telemetry.Finished("Failed", "InvalidSpec", None, None, None, None),
        ),
        ("Succeeded", {"phase": "Succeeded", "reason": "Completed"}, None),  # already ended
        ("Failed", {"phase": "Failed", "reason": "InternalError"}, None),  # a forced rewrite
        ("Pending", {"phase": "Signaling", "reason": "WaitingForOffer"}, None),  # still running
        (
            "Connected",
            {
                "phase": "Failed",
                "reason": "not a reason!",
                "metrics": {"mean_error_px": True, "achieved_fps": "fast"},
                "startTime": "2026-01-01T10:00:12Z",
                "completionTime": "2026-01-01T10:00:00Z",  # before the start: no duration
            },
            telemetry.Finished("Failed", "Unknown", None, None, None, None),
        ),
    ],
)
def test_a_session_counts_as_finished_only_on_the_write_that_ends_it(
    before: str | None, status: dict[str, Any], expected: telemetry.Finished | None
) -> None:
    assert telemetry.finished(before, status) == expected


def sample(families: Any, name: str, **labels: str) -> float | None:
    for family in families:
        for s in family.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                return float(s.value)
    return None


def test_sessions_by_phase_follow_what_is_seen() -> None:
    phases = telemetry.SessionPhases()
    registry = CollectorRegistry()
    registry.register(phases)
    phases.see("a", "one", "Connected")
    phases.see("a", "two", None)  # no status yet
    phases.see("b", "one", "Succeeded")
    phases.see("a", "one", "Succeeded")  # the same session moved on
    phases.see("a", "three", "Bogus")
    phases.forget("a", "three")
    phases.forget("a", "never-seen")
    families = list(text_string_to_metric_families(generate_latest(registry).decode()))
    assert sample(families, "rebound_sessions", phase="Succeeded") == 2
    assert sample(families, "rebound_sessions", phase="Pending") == 1
    assert sample(families, "rebound_sessions", phase="Connected") == 0
    assert sample(families, "rebound_sessions", phase="Failed") == 0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def get(url: str) -> tuple[int, str, str]:
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.status, response.headers["Content-Type"], response.read().decode()


async def test_one_port_serves_the_probe_and_the_metrics() -> None:
    port = free_port()
    runner = await serving.start(ListenAddress.parse(f"http://127.0.0.1:{port}/healthz"))
    try:
        telemetry.record_api_call("GET", "http://h/api/v1/namespaces/n/pods/p", "200", 0.01)
        status, kind, body = await asyncio.to_thread(get, f"http://127.0.0.1:{port}/healthz")
        assert (status, json.loads(body)) == (200, {})
        status, kind, body = await asyncio.to_thread(get, f"http://127.0.0.1:{port}/metrics")
        assert status == 200 and kind.startswith("text/plain")
        families = list(text_string_to_metric_families(body))
        names = {f.name for f in families}
        assert {
            "rebound_sessions",
            "rebound_sessions_finished",
            "rebound_api_request_duration_seconds",
            "process_resident_memory_bytes",
        } <= names
        calls = sample(
            families, "rebound_api_requests_total", verb="get", resource="pods", code="200"
        )
        assert calls is not None and calls >= 1
    finally:
        await runner.cleanup()


def test_liveness_urls_are_checked() -> None:
    assert ListenAddress.parse("http://0.0.0.0:8080/healthz") == ListenAddress(
        "0.0.0.0", 8080, "/healthz"
    )
    for bad, why in (
        ("https://0.0.0.0:8080/healthz", "http://"),
        ("http://0.0.0.0/healthz", "needs a port"),
        ("http://0.0.0.0:99999/healthz", "needs a port"),
        ("http://0.0.0.0:8080/metrics", "/metrics"),
    ):
        with pytest.raises(ValueError, match=why):
            ListenAddress.parse(bad)
