"""Seeing it on a real cluster (issue 12): the operator's /metrics while sessions run, reached
through its Service on kind (`kubectl port-forward svc/...`) or, on the process node (no
kube-proxy, no port-forward), at the operator pod's address from the host."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import new_name
from helpers import (
    NS,
    OPERATOR_NS,
    apply,
    container_id,
    dump,
    kubectl,
    kubectl_json,
    phase_is,
    process_node,
    run,
    session_yaml,
    status_of,
    wait_for,
)
from prometheus_client.parser import text_string_to_metric_families

pytestmark = pytest.mark.usefixtures("cluster")
METRICS_SERVICE = "rebound-operator-metrics"
REPO = Path(__file__).resolve().parents[1]
SMALL = "width: 320, height: 240, radius: 12, fps: 15"


def start(sessions: list[str], spec: str, prefix: str) -> str:
    name = new_name(prefix)
    sessions.append(name)
    result = apply(session_yaml(name, spec))
    assert result.returncode == 0, result.stderr
    return name


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def port_forward(target: str, remote: int, namespace: str) -> Iterator[int]:
    """`kubectl port-forward` to `target` (e.g. svc/x, pod/y) on a free local port."""
    local = free_port()
    forward = subprocess.Popen(
        ["kubectl", "-n", namespace, "port-forward", target, f"{local}:{remote}"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", local), 1):
                break
            if forward.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"port-forward {target} failed: {forward.communicate()}")
            time.sleep(0.2)
        yield local
    finally:
        forward.terminate()
        forward.wait(10)


def operator_pod() -> dict[str, object]:
    pods = kubectl_json(
        "-n", OPERATOR_NS, "get", "pods", "-l", "app.kubernetes.io/name=rebound-operator"
    )["items"]
    running = [p for p in pods if (p.get("status") or {}).get("phase") == "Running"]
    assert len(running) == 1, f"expected one running operator pod: {pods}"
    return dict(running[0])


@contextlib.contextmanager
def metrics_url() -> Iterator[str]:
    """Where the operator's /metrics is reachable from here."""
    if process_node():
        ip = operator_pod()["status"]["podIP"]  # type: ignore[index]
        yield f"http://{ip}:8080/metrics"
    else:
        with port_forward(f"svc/{METRICS_SERVICE}", 8080, OPERATOR_NS) as local:
            yield f"http://127.0.0.1:{local}/metrics"


def scrape(url: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    with urllib.request.urlopen(url, timeout=10) as response:
        text = response.read().decode()
    return {
        (s.name, frozenset(s.labels.items())): float(s.value)
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(
    samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str
) -> float:
    return sum(v for (n, ls), v in samples.items() if n == name and set(labels.items()) <= set(ls))


def test_the_metrics_service_selects_the_operator_pod() -> None:
    pod = operator_pod()
    slices = kubectl_json(
        "-n", OPERATOR_NS, "get", "endpointslices", "-l",
        f"kubernetes.io/service-name={METRICS_SERVICE}",
    )["items"]  # fmt: skip
    addresses = {
        a for s in slices for e in s.get("endpoints") or [] for a in e.get("addresses") or []
    }
    assert pod["status"]["podIP"] in addresses, slices  # type: ignore[index]
    ports = {(p.get("name"), p.get("port")) for s in slices for p in s.get("ports") or []}
    assert ("http", 8080) in ports


def test_metrics_count_finished_sessions_on_the_real_api_server(sessions: list[str]) -> None:
    with metrics_url() as url:
        before = scrape(url)
        name = start(sessions, f"{{{SMALL}, frames: 60}}", "metrics")
        strict = start(sessions, f"{{{SMALL}, frames: 45, maxMeanErrorPx: 0.000001}}", "strict")
        for session in (name, strict):
            try:
                wait_for(session, "jsonpath={.status.completionTime}", 300)
            except subprocess.CalledProcessError:
                pytest.fail(dump(session))
        assert status_of(name)["phase"] == "Succeeded", dump(name)
        assert status_of(strict)["reason"] == "ErrorTooHigh", dump(strict)
        after = scrape(url)
    finished = "rebound_sessions_finished_total"

    def grew(metric: str, **labels: str) -> float:
        return value(after, metric, **labels) - value(before, metric, **labels)

    assert grew(finished, phase="Succeeded", reason="Completed") >= 1
    assert grew(finished, phase="Failed", reason="ErrorTooHigh") >= 1
    assert grew("rebound_session_mean_error_px_count", phase="Succeeded") >= 1
    assert grew("rebound_session_duration_seconds_count", phase="Failed") >= 1
    assert value(after, "rebound_sessions", phase="Succeeded") >= 1
    # a real API server answers a create with 201
    assert grew("rebound_api_requests_total", verb="create", resource="pods", code="201") >= 4
    assert value(after, "rebound_api_request_duration_seconds_count", verb="patch") > 0
    assert value(after, "process_resident_memory_bytes") > 0
    kubectl("-n", NS, "get", "ballsession", name)  # still there for the gauge


def test_the_report_of_a_ballsession(sessions: list[str], tmp_path: Path) -> None:
    name = start(sessions, f"{{{SMALL}, frames: 90}}", "report")
    try:
        wait_for(name, "condition=Succeeded", 300)
    except subprocess.CalledProcessError:
        pytest.fail(dump(name))
    deadline = time.monotonic() + 30
    while not (ready := [e for e in session_events(name) if e["reason"] == "ReportReady"]):
        assert time.monotonic() < deadline, dump(name)
        time.sleep(1)
    assert "(90 frames)" in ready[0]["message"], ready
    data = kubectl_json("-n", NS, "get", "configmap", f"{name}-server-signaling")["data"]
    assert len(data["series"].encode()) <= 200_000
    assert "series" not in json.dumps(status_of(name))  # never copied into the status
    plugins = tmp_path / "bin"
    run("make", "-C", str(REPO), "install-kubectl-plugin", f"PLUGIN_DIR={plugins}")
    env = {**os.environ, "PATH": f"{plugins}:{os.environ['PATH']}"}
    output = tmp_path / f"{name}.html"
    done = subprocess.run(
        ["kubectl", "rebound", "report", name, "-n", NS, "-o", str(output)],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"wrote {output} (90 of 90 frames)"
    html = output.read_text()
    assert html.lstrip().lower().startswith("<!doctype html") and "<img" in html
    assert "http://" not in html and "https://" not in html  # self-contained


def test_the_live_view_is_reached_on_the_pods_loopback_only(sessions: list[str]) -> None:
    name = start(
        sessions,
        f"{{{SMALL}, frames: 0, durationSeconds: 0, activeDeadlineSeconds: 0, liveView: true}}",
        "live",
    )
    phase_is(name, "Connected", 240)
    events = [e for e in session_events(name) if e["reason"] == "LiveView"]
    assert events and f"port-forward pod/{name}-server 8090" in events[0]["message"], events
    server = kubectl_json("-n", NS, "get", "pod", f"{name}-server")
    args = server["spec"]["containers"][0]["args"]
    assert args[args.index("--view-port") + 1] == "8090" and "--view-host" not in args
    if process_node():
        # No kubectl port-forward here: do what it does (enter the pod's network namespace,
        # connect to localhost there) with nsenter, and check the pod's address is refused.
        pid = container_id(server).partition("://")[2]
        page, first = in_pod_netns(pid, "/"), in_pod_netns(pid, "/stats.json")
        time.sleep(2)
        second = in_pod_netns(pid, "/stats.json")
        with pytest.raises(OSError):
            socket.create_connection((server["status"]["podIP"], 8090), 3).close()
    else:
        with port_forward(f"pod/{name}-server", 8090, NS) as local:
            page = fetch(f"http://127.0.0.1:{local}/")
            first = fetch(f"http://127.0.0.1:{local}/stats.json")
            time.sleep(2)  # the numbers on the page move while the session streams
            second = fetch(f"http://127.0.0.1:{local}/stats.json")
    assert page.lstrip().lower().startswith("<!doctype html"), page[:200]
    numbers = [json.loads(first), json.loads(second)]
    assert numbers[1]["frames_sent"] > numbers[0]["frames_sent"], numbers
    assert numbers[1]["frames_matched"] > 0, numbers
    policy = kubectl_json("-n", NS, "get", "networkpolicy", f"{name}-peers")["spec"]
    assert all(p.get("protocol") == "UDP" for r in policy["ingress"] for p in r["ports"])


def fetch(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as answer:
        return str(answer.read().decode())


def in_pod_netns(pid: str, path: str) -> str:
    """GET http://127.0.0.1:8090<path> from inside the network namespace of process `pid`."""
    code = (
        "import sys, urllib.request; "
        f"sys.stdout.write(urllib.request.urlopen('http://127.0.0.1:8090{path}', timeout=10)"
        ".read().decode())"
    )
    done = run("nsenter", f"--net=/proc/{pid}/ns/net", sys.executable, "-c", code, timeout=30)
    return done.stdout


def session_events(name: str) -> list[dict[str, str]]:
    """The Events about one BallSession (reason, type, message), oldest first."""
    events = kubectl_json(
        "-n", NS, "get", "events", "--field-selector",
        f"involvedObject.kind=BallSession,involvedObject.name={name}",
        "--sort-by=.metadata.creationTimestamp",
    )["items"]  # fmt: skip
    return [
        {
            "reason": str(e.get("reason")),
            "type": str(e.get("type")),
            "message": str(e.get("message")),
        }
        for e in events
    ]
