"""What the cluster e2e tests share: kubectl, BallSession manifests, waits with deadlines,
diagnostics, and reaching a pod's process on either runtime (kind or the process node).

The tests target whatever `kubectl` reaches (`KUBECONFIG`): kind (`make e2e`) or the local
cluster (`make e2e-local`). Every wait is a deadline on the resource (`kubectl wait`), never
a fixed sleep.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import uuid
from typing import Any

import yaml
from capacity import Room, Sizing, free_room, size_sessions

NS = "rebound-sessions"
OPERATOR_NS = "rebound-system"


def run(
    *args: str, check: bool = True, timeout: float = 120, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    """Run a command, capturing text output."""
    return subprocess.run(
        args, capture_output=True, text=True, check=check, timeout=timeout, input=stdin
    )


def kubectl(
    *args: str, check: bool = True, timeout: float = 120, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    """`kubectl ...` (the one on PATH: `make e2e-local` puts the cluster's own first)."""
    return run("kubectl", *args, check=check, timeout=timeout, stdin=stdin)


def kubectl_json(*args: str) -> Any:
    """`kubectl ... -o json`, parsed."""
    return json.loads(kubectl(*args, "-o", "json").stdout)


def apply(manifest: str) -> subprocess.CompletedProcess[str]:
    """`kubectl apply -f -` of a manifest; the result, never raising."""
    return kubectl("apply", "-f", "-", check=False, timeout=60, stdin=manifest)


def session_yaml(name: str, spec: str, namespace: str = NS) -> str:
    """A BallSession manifest with an inline (flow-style) spec."""
    return (
        "apiVersion: rebound.dev/v1alpha1\nkind: BallSession\n"
        f"metadata: {{name: {name}, namespace: {namespace}}}\nspec: {spec}\n"
    )


def create_session(sessions: list[str], spec: dict[str, Any], prefix: str = "e2e") -> str:
    """Create a BallSession with a fresh name (recorded in `sessions`, the fixture that
    dumps and deletes them) and return its name."""
    name = f"{prefix}-{uuid.uuid4().hex[:6]}"
    sessions.append(name)
    result = apply(session_yaml(name, json.dumps(spec)))
    assert result.returncode == 0, result.stderr
    return name


def wait_for(name: str, condition: str, timeout: int, kind: str = "ballsession") -> None:
    """`kubectl wait --for=<condition>` on one object (CalledProcessError on timeout)."""
    kubectl(
        "-n",
        NS,
        "wait",
        f"{kind}/{name}",
        f"--for={condition}",
        f"--timeout={timeout}s",
        timeout=timeout + 30,
    )


def phase_is(name: str, phase: str, timeout: int) -> None:
    """Wait until the BallSession's phase is `phase`."""
    wait_for(name, f"jsonpath={{.status.phase}}={phase}", timeout)


def status_of(name: str) -> dict[str, Any]:
    """A BallSession's status."""
    return dict(kubectl_json("-n", NS, "get", "ballsession", name).get("status") or {})


def session_pods(name: str) -> list[dict[str, Any]]:
    """The pods labelled with a session."""
    return list(kubectl_json("-n", NS, "get", "pods", "-l", f"rebound.dev/session={name}")["items"])


def session_event_reasons(name: str) -> list[str]:
    """The reasons of the Events about one BallSession, oldest first."""
    events = kubectl_json(
        "-n",
        NS,
        "get",
        "events",
        "--field-selector",
        f"involvedObject.kind=BallSession,involvedObject.name={name}",
        "--sort-by=.metadata.creationTimestamp",
    )["items"]
    return [str(e.get("reason")) for e in events]


def operator_log(tail: int = 2000) -> str:
    """The running operator pod's log (its last `tail` lines)."""
    return kubectl(
        "-n", OPERATOR_NS, "logs", "deploy/rebound-operator", f"--tail={tail}", check=False
    ).stdout


def json_lines(text: str) -> list[dict[str, Any]]:
    """The lines of `text` that are JSON objects, parsed (a JSON log, minus anything else)."""
    parsed = []
    for line in text.splitlines():
        try:
            value = json.loads(line)
        except ValueError:
            continue
        if isinstance(value, dict):
            parsed.append(value)
    return parsed


def dump(name: str) -> str:
    """Operator logs, the session, events and peer logs: printed when a test fails."""
    parts = [
        operator_log(tail=200),
        kubectl("-n", NS, "describe", "ballsession", name, check=False).stdout,
        kubectl("-n", NS, "get", "events", "--sort-by=.lastTimestamp", check=False).stdout,
        kubectl("-n", NS, "get", "pods", "-o", "wide", check=False).stdout,
    ]
    for role in ("server", "client"):
        parts.append(kubectl("-n", NS, "logs", f"{name}-{role}", "--tail=60", check=False).stdout)
    return "\n---\n".join(parts)


def process_node() -> bool:
    """True when the cluster is the local one (its node runs pods as processes)."""
    nodes = kubectl_json("get", "nodes")["items"]
    return any(
        (n["metadata"].get("labels") or {}).get("rebound.dev/process-node") == "true" for n in nodes
    )


def container_id(pod: dict[str, Any]) -> str:
    """The pod's (single) container ID, e.g. `process://1234` or `containerd://abc`."""
    statuses = (pod.get("status") or {}).get("containerStatuses") or [{}]
    return str(statuses[0].get("containerID") or "")


def kill_container(pod: dict[str, Any]) -> None:
    """SIGKILL the pod's container: directly on the process node, via crictl in the node it
    runs on (a kind node is a docker container named after the node) on kind."""
    cid = container_id(pod)
    runtime, _, ident = cid.partition("://")
    if runtime == "process":
        os.kill(int(ident), signal.SIGKILL)
    elif runtime == "containerd":
        node = (pod.get("spec") or {}).get("nodeName")
        assert node, f"pod {pod['metadata']['name']} is not bound to a node"
        run("docker", "exec", node, "crictl", "stop", "--timeout", "0", ident)
    else:
        raise AssertionError(f"cannot kill container {cid!r}")


def cluster_room() -> list[Room]:
    """What each schedulable node has left for new pods, roomiest first."""
    nodes = kubectl_json("get", "nodes")["items"]
    pods = kubectl_json("get", "pods", "--all-namespaces")["items"]
    return free_room(nodes, pods)


def fit(fields: dict[str, Any], sessions: int = 1) -> tuple[dict[str, Any], Sizing]:
    """A spec with `resources` such that `sessions` such sessions fit the cluster at once
    (unchanged where the default requests fit, or it names its own), and the sizing used."""
    sizing = size_sessions(cluster_room(), sessions)
    if sizing.resources is None or "resources" in fields:
        return fields, sizing
    return {**fields, "resources": sizing.resources}, sizing


def fitted(spec: str, sessions: int = 1) -> tuple[str, Sizing]:
    """`fit` for a spec written as flow YAML."""
    fields, sizing = fit(dict(yaml.safe_load(spec) or {}), sessions)
    return json.dumps(fields), sizing


def process_alive(cid: str) -> bool:
    """On the process node: is the container's process still running?"""
    runtime, _, ident = cid.partition("://")
    if runtime != "process":
        raise ValueError(cid)
    try:
        os.kill(int(ident), 0)
    except ProcessLookupError:
        return False
    try:
        with open(f"/proc/{ident}/stat") as stat:
            return stat.read().rsplit(")", 1)[-1].split()[0] != "Z"
    except OSError:
        return False
