"""What Flux (kstatus, sigs.k8s.io/cli-utils) and Argo CD (manifests/argocd/health.lua in
gopher-lua) make of every status the state machine writes, through the Go helper
e2e/gohealth (built once with scripts/go-tool.sh and cached). The e2e suite asks the same of
live objects on a real API server (e2e/test_gitops.py)."""

from __future__ import annotations

import json
import shutil
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from rebound_operator.lifecycle import (
    Observation,
    PodView,
    Signals,
    acknowledge,
    evaluate,
    failed_status,
    waiting_status,
)
from rebound_operator.spec import parse_spec

REPO = Path(__file__).resolve().parents[2]
T0 = datetime(2026, 11, 24, 12, 0, 0, tzinfo=UTC)
SPEC = parse_spec({})
SUMMARY = {
    "frames_sent": 300,
    "coordinates_received": 300,
    "frames_matched": 300,
    "frames_dropped_by_client": 0,
    "mean_error_px": 0.02,
    "p95_error_px": 0.04,
    "max_error_px": 0.1,
    "achieved_fps": 30.0,
    "latency_ms_p50": 37.0,
    "latency_ms_p95": 39.0,
}


@pytest.fixture(scope="module")
def gohealth(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The built helper and the argocd-cm that `kubectl kustomize manifests/argocd` renders."""
    if shutil.which("go") is None:
        pytest.skip("go is not installed: cannot build the kstatus/gopher-lua helper")
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl (kustomize) is not installed: cannot render manifests/argocd")
    built = subprocess.run(
        ["bash", str(REPO / "scripts" / "go-tool.sh"), "build", str(REPO / "e2e" / "gohealth")],
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
    )
    if built.returncode != 0 and "proxy" in built.stderr:
        pytest.skip(f"the Go module proxy is unreachable: {built.stderr.strip()[-300:]}")
    assert built.returncode == 0, built.stderr
    argocd_cm = tmp_path_factory.mktemp("argocd") / "argocd-cm.yaml"
    rendered = subprocess.run(
        [kubectl, "kustomize", str(REPO / "manifests" / "argocd")],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    argocd_cm.write_text(rendered.stdout)
    return Path(built.stdout.strip()), argocd_cm


def session(name: str, status: dict[str, Any] | None, generation: int = 1) -> dict[str, Any]:
    body: dict[str, Any] = {
        "apiVersion": "rebound.dev/v1alpha1",
        "kind": "BallSession",
        "metadata": {"name": name, "namespace": "ns", "generation": generation},
        "spec": {},
    }
    if status is not None:
        body["status"] = status
    return body


def judged(gohealth: tuple[Path, Path], *objects: dict[str, Any]) -> dict[str, tuple[str, str]]:
    helper, argocd_cm = gohealth
    result = subprocess.run(
        [str(helper), "--argocd-cm", str(argocd_cm)],
        input=json.dumps({"apiVersion": "v1", "kind": "List", "items": list(objects)}),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return {
        r["name"]: (r["kstatus"]["status"], r["argocd"]["status"])
        for r in json.loads(result.stdout)
    }


def status_of(obs: Observation, previous: dict[str, Any] | None = None) -> dict[str, Any]:
    return evaluate(SPEC, obs, previous or {}, generation=1).status


def running(name: str) -> PodView:
    return PodView(name, "Running", started=True)


def test_every_phase_reads_as_flux_and_argo_cd_should(gohealth: tuple[Path, Path]) -> None:
    now = T0 + timedelta(seconds=5)
    pending = Observation(now, T0, PodView("a-server"), PodView("a-client"))
    no_room = Observation(
        now, T0, running("b-server"), PodView("b-client", unschedulable="0/1 nodes: no cpu")
    )
    both = {"server": running("c-server"), "client": running("c-client")}
    signaling = Observation(now, T0, **both, signals=Signals.read({"offer": "o"}, {}))
    live = Signals.read({"offer": "o", "metrics": json.dumps(SUMMARY)}, {"answer": "a"})
    streaming = Observation(now, T0, **both, signals=live)
    ended = {
        "server": PodView("e-server", "Succeeded", exit_code=0, started=True, finished_at=now),
        "client": PodView("e-client", "Succeeded", exit_code=0, started=True, finished_at=now),
    }
    done = Signals.read({"offer": "o", "summary": json.dumps(SUMMARY)}, {"answer": "a"})
    succeeded = status_of(Observation(now, T0, **ended, signals=done), {"phase": "Connected"})
    failed = status_of(Observation(now, T0, running("f-server"), None))
    assert (succeeded["phase"], failed["phase"]) == ("Succeeded", "Failed")
    objects = [
        session("pending", status_of(pending)),
        session("unschedulable", status_of(no_room)),
        session("signaling", status_of(signaling)),
        session("connected", status_of(streaming)),
        session("succeeded", succeeded),
        session("failed", failed),
        session("invalid", failed_status("InvalidSpec", "spec.fps: no", now, None, 1)),
        session("cleanup", waiting_status("old pods", now, None, 1)),
        # A finished session whose spec was edited: the verdict stands, observed anew.
        session("edited", {**succeeded, **acknowledge(succeeded, 2)}, generation=2),
    ]
    assert judged(gohealth, *objects) == {
        "pending": ("InProgress", "Progressing"),
        "unschedulable": ("InProgress", "Progressing"),
        "signaling": ("InProgress", "Progressing"),
        "connected": ("InProgress", "Progressing"),
        "succeeded": ("Current", "Healthy"),
        "failed": ("Failed", "Degraded"),
        "invalid": ("Failed", "Degraded"),
        "cleanup": ("InProgress", "Progressing"),
        "edited": ("Current", "Healthy"),
    }


def test_a_status_the_operator_has_not_observed_is_never_current(
    gohealth: tuple[Path, Path],
) -> None:
    """An edit the operator has not seen yet (observedGeneration behind) is in progress, and
    so is a session that has only the status the CRD defaults (before the operator's first
    write); without that default kstatus would call a brand-new session Current."""
    succeeded_then_edited = session(
        "behind",
        failed_status("PodFailed", "x", T0, None, 1) | {"observedGeneration": 1},
        generation=2,
    )
    defaulted = session("fresh", {"observedGeneration": 0})
    bare = session("bare", None)
    assert judged(gohealth, succeeded_then_edited, defaulted, bare) == {
        "behind": ("InProgress", "Degraded"),
        "fresh": ("InProgress", "Progressing"),
        "bare": ("Current", "Progressing"),  # why the CRD defaults status.observedGeneration
    }
