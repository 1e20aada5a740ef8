"""End-to-end on a real cluster (kind): `make e2e` creates it, loads the images, deploys
Rebound and runs this. Every wait is a deadline on the resource (`kubectl wait`), never a
fixed sleep; on failure the operator's logs, the events and `kubectl describe` are dumped."""

from __future__ import annotations

import subprocess
import time
import uuid
from collections.abc import Iterator

import pytest
from conftest import kubectl_json, run

NS = "rebound-sessions"
pytestmark = pytest.mark.usefixtures("cluster")


def apply(manifest: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["kubectl", "apply", "-f", "-"], input=manifest, capture_output=True, text=True, timeout=60
    )


def session_yaml(name: str, spec: str) -> str:
    return (
        f"apiVersion: rebound.dev/v1alpha1\nkind: BallSession\n"
        f"metadata: {{name: {name}, namespace: {NS}}}\nspec: {spec}\n"
    )


def wait(name: str, jsonpath: str, timeout: int) -> None:
    run(
        "kubectl",
        "-n",
        NS,
        "wait",
        f"ballsession/{name}",
        f"--for=jsonpath={jsonpath}",
        f"--timeout={timeout}s",
        timeout=timeout + 30,
    )


def dump(name: str) -> str:
    parts = [
        run(
            "kubectl",
            "-n",
            "rebound-system",
            "logs",
            "deploy/rebound-operator",
            "--tail=200",
            check=False,
        ).stdout,
        run("kubectl", "-n", NS, "describe", "ballsession", name, check=False).stdout,
        run("kubectl", "-n", NS, "get", "events", "--sort-by=.lastTimestamp", check=False).stdout,
        run("kubectl", "-n", NS, "logs", f"{name}-server", check=False).stdout,
    ]
    return "\n---\n".join(parts)


@pytest.fixture
def session_name(request: pytest.FixtureRequest) -> Iterator[str]:
    name = f"e2e-{uuid.uuid4().hex[:6]}"
    yield name
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:
        print(dump(name))
    run(
        "kubectl",
        "-n",
        NS,
        "delete",
        "ballsession",
        name,
        "--ignore-not-found",
        "--wait=false",
        check=False,
    )


def test_a_session_succeeds_with_metrics(session_name: str) -> None:
    assert apply(session_yaml(session_name, "{frames: 300, maxMeanErrorPx: 0.5}")).returncode == 0
    try:
        wait(session_name, "{.status.phase}=Succeeded", 300)
    except subprocess.CalledProcessError:
        pytest.fail(dump(session_name))
    status = kubectl_json("-n", NS, "get", "ballsession", session_name)["status"]
    metrics = status["metrics"]
    assert metrics["frames_matched"] >= 0.95 * metrics["frames_sent"]
    assert metrics["mean_error_px"] < 0.25
    conditions = {c["type"]: c["status"] for c in status["conditions"]}
    assert conditions["Succeeded"] == "True"
    table = run("kubectl", "-n", NS, "get", "ballsession", session_name).stdout
    assert "Succeeded" in table and "MEAN ERR" in table.upper()


def test_an_invalid_session_is_rejected_with_a_readable_message() -> None:
    result = apply(session_yaml("too-big", "{width: 320, height: 240, radius: 200}"))
    assert result.returncode != 0
    assert "does not fit the frame" in result.stderr
    result = apply(session_yaml("too-fast", "{fps: 1000}"))
    assert result.returncode != 0
    assert "fps" in result.stderr


def test_deleting_the_client_pod_mid_session_fails_it(session_name: str) -> None:
    spec = "{frames: 0, durationSeconds: 0, activeDeadlineSeconds: 0}"
    assert apply(session_yaml(session_name, spec)).returncode == 0
    wait(session_name, "{.status.phase}=Connected", 240)
    run("kubectl", "-n", NS, "delete", "pod", f"{session_name}-client", "--wait=false")
    wait(session_name, "{.status.phase}=Failed", 120)
    status = kubectl_json("-n", NS, "get", "ballsession", session_name)["status"]
    assert f"{session_name}-client" in status["message"] or "client" in status["message"]


def test_deleting_the_session_removes_its_children(session_name: str) -> None:
    spec = "{frames: 0, durationSeconds: 0, activeDeadlineSeconds: 0}"
    assert apply(session_yaml(session_name, spec)).returncode == 0
    wait(session_name, "{.status.phase}=Connected", 240)
    run("kubectl", "-n", NS, "delete", "ballsession", session_name, "--timeout=120s", timeout=150)
    deadline = time.monotonic() + 120
    selector = f"rebound.dev/session={session_name}"
    while time.monotonic() < deadline:
        left = run(
            "kubectl",
            "-n",
            NS,
            "get",
            "pods,configmaps,roles,rolebindings,serviceaccounts",
            "-l",
            selector,
            "-o",
            "name",
        ).stdout.strip()
        if not left:
            return
        time.sleep(2)  # polling the garbage collector's progress against a deadline
    pytest.fail(f"children left after deleting the session:\n{left}\n{dump(session_name)}")
