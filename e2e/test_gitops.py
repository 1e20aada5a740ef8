"""GitOps health, for real: on live BallSessions, kstatus (the library Flux uses to wait for
what it applied) and the repository's Argo CD health check (manifests/argocd/health.lua, run
as Argo CD runs it, in gopher-lua) agree with the session: in progress while it runs or waits,
current/healthy once it succeeded, failed/degraded once it failed."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from capacity import more_than_any_node
from conftest import unavailable
from health import ToolUnavailable, judge, tool
from helpers import (
    cluster_room,
    create_session,
    dump,
    fit,
    phase_is,
    status_of,
    wait_for,
)

pytestmark = pytest.mark.usefixtures("cluster")


@pytest.fixture(scope="module")
def gitops(cluster: None) -> Iterator[None]:
    """The Go helper, built (or found in the cache) once."""
    try:
        tool()
    except ToolUnavailable as exc:
        unavailable(str(exc))
    yield


def verdicts(name: str) -> tuple[str, str]:
    found = judge(name)[name]
    return found["kstatus"]["status"], found["argocd"]["status"]


def test_a_running_session_is_in_progress_then_current_and_healthy(
    sessions: list[str], gitops: None
) -> None:
    name = create_session(sessions, fit({"frames": 450})[0], "flux")
    phase_is(name, "Connected", 240)
    assert verdicts(name) == ("InProgress", "Progressing"), dump(name)
    try:
        wait_for(name, "condition=Succeeded", 300)
    except Exception:
        pytest.fail(dump(name))
    found = judge(name)[name]
    message = status_of(name)["message"]
    assert found["kstatus"] == {"status": "Current", "message": "Resource is Ready"}
    assert found["argocd"] == {"status": "Healthy", "message": message}


def test_a_failed_session_is_failed_and_degraded_with_its_reason(
    sessions: list[str], gitops: None
) -> None:
    spec = {"pendingTimeoutSeconds": 10, "resources": more_than_any_node(cluster_room())}
    name = create_session(sessions, spec, "argo")
    wait_for(name, "jsonpath={.status.reason}=Unschedulable", 60)
    waiting = judge(name)[name]
    assert waiting["kstatus"]["status"] == "InProgress", waiting
    assert waiting["argocd"]["status"] == "Progressing", waiting
    assert "Insufficient cpu" in waiting["argocd"]["message"]
    phase_is(name, "Failed", 90)
    failed = judge(name)[name]
    message = status_of(name)["message"]
    assert failed["kstatus"] == {"status": "Failed", "message": message}
    assert failed["argocd"] == {"status": "Degraded", "message": message}
