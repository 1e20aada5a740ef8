"""End-to-end on a real API server: kind (`make e2e`) or the local cluster built from source
(`make cluster-up && make e2e-local`). The operator runs as its Deployment's pod, under its
own ServiceAccount; every claim here is checked by the real kube-apiserver, scheduler,
garbage collector and admission (CEL, strict fields, RBAC, PodSecurity)."""

from __future__ import annotations

import subprocess
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from conftest import new_name
from helpers import (
    NS,
    apply,
    container_id,
    dump,
    fitted,
    json_lines,
    kill_container,
    kubectl,
    operator_log,
    phase_is,
    process_alive,
    process_node,
    session_event_reasons,
    session_pods,
    session_yaml,
    status_of,
    wait_for,
)

pytestmark = pytest.mark.usefixtures("cluster")
UNLIMITED = "{frames: 0, durationSeconds: 0, activeDeadlineSeconds: 0}"
CHILD_KINDS = "pods,configmaps,serviceaccounts,roles,rolebindings,networkpolicies"


def start(sessions: list[str], spec: str, prefix: str = "e2e", *, fit: bool = True) -> str:
    """Create a BallSession; with `fit`, with requests the cluster has room for now."""
    name = new_name(prefix)
    sessions.append(name)
    if fit:
        spec, _ = fitted(spec)
    result = apply(session_yaml(name, spec))
    assert result.returncode == 0, result.stderr
    return name


def test_a_session_succeeds_with_metrics_in_every_column(sessions: list[str]) -> None:
    name = start(sessions, "{frames: 300, expect: {maxMeanErrorPx: 0.5, minMatchedRatio: 0.9}}")
    try:
        wait_for(name, "condition=Succeeded", 300)
    except subprocess.CalledProcessError:
        pytest.fail(dump(name))
    status = status_of(name)
    metrics = status["metrics"]
    assert metrics["frames_sent"] >= 300
    assert metrics["frames_matched"] >= 0.95 * metrics["frames_sent"]
    assert metrics["mean_error_px"] < 0.25
    assert status["phase"] == "Succeeded"
    gates = {gate["name"]: gate for gate in status["gates"]}
    assert set(gates) == {"maxMeanErrorPx", "minMatchedRatio"} and all(
        gate["met"] for gate in gates.values()
    ), gates
    assert status["serverNode"] and status["clientNode"] and status["serverPodIP"]
    table = kubectl("-n", NS, "get", "ballsession", name, "-o", "wide").stdout
    print(table)
    header, row = table.strip().splitlines()
    assert "MEAN ERR" in header.upper()
    assert "<none>" not in row, f"a printer column is empty:\n{table}"
    assert row.split()[0] == name and "Succeeded" in row
    # `kubectl describe` and the operator's log tell what happened, not every watch event.
    deadline = time.monotonic() + 30
    while "Completed" not in (reasons := session_event_reasons(name)):
        assert time.monotonic() < deadline, f"no Completed Event, only {reasons}"
        time.sleep(1)
    assert "Created" in reasons and "Logging" not in reasons, reasons
    log = operator_log()
    about = [
        str(line.get("message"))
        for line in json_lines(log)  # the Deployment runs it with --log-format json
        if (line.get("object") or {}).get("name") == name
    ]
    assert any(m.startswith("Completed: Succeeded: ") for m in about), about
    assert "Handler 'peer_pod_changed' succeeded." not in log, log[-3000:]


def test_admission_refuses_invalid_unknown_and_edited_specs(sessions: list[str]) -> None:
    too_big = apply(session_yaml(new_name("bad"), "{width: 320, height: 240, radius: 200}"))
    assert too_big.returncode != 0 and "does not fit the frame" in too_big.stderr
    too_fast = apply(session_yaml(new_name("bad"), "{fps: 1000}"))
    assert too_fast.returncode != 0 and "fps" in too_fast.stderr
    unknown = apply(session_yaml(new_name("bad"), "{frames: 30, colour: red}"))
    assert unknown.returncode != 0 and 'unknown field "spec.colour"' in unknown.stderr
    name = start(sessions, "{frames: 30}")
    edit = kubectl(
        "-n",
        NS,
        "patch",
        "ballsession",
        name,
        "--type",
        "merge",
        "-p",
        '{"spec":{"fps":10}}',
        check=False,
    )
    assert edit.returncode != 0 and "spec is immutable" in edit.stderr


def test_deleting_the_client_pod_fails_the_session_naming_it(sessions: list[str]) -> None:
    name = start(sessions, UNLIMITED)
    phase_is(name, "Connected", 240)
    kubectl("-n", NS, "delete", "pod", f"{name}-client", "--wait=false")
    phase_is(name, "Failed", 120)
    assert f"{name}-client" in status_of(name)["message"], dump(name)


def test_killing_the_server_fails_the_session(sessions: list[str]) -> None:
    name = start(sessions, UNLIMITED)
    phase_is(name, "Connected", 240)
    server = next(p for p in session_pods(name) if p["metadata"]["name"] == f"{name}-server")
    kill_container(server)
    phase_is(name, "Failed", 120)
    status = status_of(name)
    assert status["reason"] == "PodFailed", dump(name)
    assert f"{name}-server" in status["message"] and "137" in status["message"]


def test_deleting_a_session_garbage_collects_every_child(sessions: list[str]) -> None:
    name = start(sessions, UNLIMITED)
    phase_is(name, "Connected", 240)
    containers = [container_id(p) for p in session_pods(name)]
    kubectl("-n", NS, "delete", "ballsession", name, "--timeout=120s", timeout=150)
    selector = f"rebound.dev/session={name}"
    deadline = time.monotonic() + 120
    left = "?"
    while time.monotonic() < deadline:
        left = kubectl("-n", NS, "get", CHILD_KINDS, "-l", selector, "-o", "name").stdout.strip()
        if not left:
            break
        time.sleep(1)  # polling the garbage collector against a deadline
    assert not left, f"children left after deleting the session:\n{left}"
    if process_node():
        stuck = [cid for cid in containers if process_alive(cid)]
        assert not stuck, f"peer processes still running: {stuck}"


def test_the_operator_pod_is_replaced_and_resumes_the_session(sessions: list[str]) -> None:
    name = start(sessions, "{frames: 900}")
    phase_is(name, "Connected", 240)
    before = {p["metadata"]["name"]: p["metadata"]["uid"] for p in session_pods(name)}
    old = kubectl(
        "-n",
        "rebound-system",
        "get",
        "pods",
        "-l",
        "app.kubernetes.io/name=rebound-operator",
        "-o",
        "name",
    ).stdout.split()
    kubectl("-n", "rebound-system", "delete", *old, "--wait=false")
    kubectl(
        "-n",
        "rebound-system",
        "rollout",
        "status",
        "deployment/rebound-operator",
        "--timeout=120s",
        timeout=150,
    )
    wait_for(name, "condition=Succeeded", 300)
    after = {p["metadata"]["name"]: p["metadata"]["uid"] for p in session_pods(name)}
    assert after == before, "the new operator pod re-created or duplicated peer pods"
    configmaps = kubectl(
        "-n", NS, "get", "configmaps", "-l", f"rebound.dev/session={name}", "-o", "name"
    ).stdout.split()
    assert len(configmaps) == len(set(configmaps)) and configmaps


def test_twenty_sessions_at_once_all_succeed(sessions: list[str]) -> None:
    """Twenty at once, each asking for a twentieth of the room the nodes have (the default
    requests where they fit: 20 CPUs for the peers)."""
    spec = "{width: 320, height: 240, radius: 12, fps: 15, frames: 90, maxMeanErrorPx: 1.0}"
    spec, sizing = fitted(spec, sessions=20)
    assert sizing.sessions == 20, f"the nodes have no room for 20 sessions: {sizing}"
    print(f"20 sessions, resources: {sizing.resources or 'the defaults'}")
    with ThreadPoolExecutor(8) as pool:
        names = list(pool.map(lambda _: start(sessions, spec, "crowd", fit=False), range(20)))
    deadline = time.monotonic() + 600
    for name in names:
        remaining = max(int(deadline - time.monotonic()), 1)
        try:
            wait_for(name, "jsonpath={.status.completionTime}", remaining)
        except subprocess.CalledProcessError:
            pytest.fail(f"{name} did not finish\n{dump(name)}")
    phases = {name: status_of(name).get("phase") for name in names}
    failed = {n: p for n, p in phases.items() if p != "Succeeded"}
    assert not failed, f"{failed}\n{dump(next(iter(failed)))}"
