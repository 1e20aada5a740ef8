"""What GitOps tools say about live BallSessions: kstatus (the library Flux uses) and the
repository's Argo CD health check (manifests/argocd/health.lua, as Argo CD runs it in
gopher-lua), through the Go helper `e2e/gohealth`, built once and cached by
`scripts/go-tool.sh`."""

from __future__ import annotations

import functools
import json
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from helpers import NS, kubectl

REPO = Path(__file__).resolve().parents[1]
ARGOCD = REPO / "manifests" / "argocd"


class ToolUnavailable(RuntimeError):
    """The helper cannot be built here (no Go, no module proxy); the message says why."""


@functools.cache
def tool() -> Path:
    """The built helper (a cached build after the first call)."""
    built = subprocess.run(
        ["bash", str(REPO / "scripts" / "go-tool.sh"), "build", str(REPO / "e2e" / "gohealth")],
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
    )
    if built.returncode != 0:
        raise ToolUnavailable(f"cannot build e2e/gohealth: {built.stderr.strip()[-2000:]}")
    return Path(built.stdout.strip())


@functools.cache
def argocd_cm() -> Path:
    """argocd-cm as `kubectl apply -k manifests/argocd` would write its health key."""
    rendered = kubectl("kustomize", str(ARGOCD)).stdout
    folder = Path(tempfile.mkdtemp(prefix="rebound-argocd-"))
    path = folder / "argocd-cm.yaml"
    path.write_text(rendered)
    return path


def judge(*names: str) -> dict[str, dict[str, Any]]:
    """name -> {"kstatus": {status, message}, "argocd": {status, message}} for the live
    BallSessions `names` (one read of all of them)."""
    live = kubectl("-n", NS, "get", "ballsessions", *names, "-o", "json").stdout
    verdicts = subprocess.run(
        [str(tool()), "--argocd-cm", str(argocd_cm())],
        input=live,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert verdicts.returncode == 0, verdicts.stderr
    return {entry["name"]: entry for entry in json.loads(verdicts.stdout)}
