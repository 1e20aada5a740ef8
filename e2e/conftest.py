"""Shared helpers for the e2e tiers (kind cluster, containers). Not part of `make test`."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

TESTS = Path(__file__).resolve().parents[1] / "tests"
if str(TESTS) not in sys.path:
    sys.path.append(str(TESTS))  # the emulator harness (kube_harness) and lockfile helpers


def missing_tools(*tools: str) -> list[str]:
    """The tools of `tools` not on PATH."""
    return [tool for tool in tools if shutil.which(tool) is None]


def run(*args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run a command, capturing text output."""
    return subprocess.run(args, capture_output=True, text=True, check=check, timeout=timeout)


def kubectl_json(*args: str) -> Any:
    """`kubectl ... -o json`, parsed."""
    return json.loads(run("kubectl", *args, "-o", "json").stdout)


def docker_ready() -> str | None:
    """None when a Docker engine answers, else why not."""
    if missing_tools("docker"):
        return "docker CLI is not installed"
    info = run("docker", "info", check=False, timeout=30)
    return None if info.returncode == 0 else "no Docker engine is running (start dockerd)"


@pytest.fixture(scope="session")
def cluster() -> None:
    """Skip unless kind, kubectl and docker exist and a cluster with Rebound is reachable."""
    gone = missing_tools("docker", "kind", "kubectl")
    if gone:
        pytest.skip(f"e2e needs {', '.join(gone)} (run `make e2e` on a machine with docker+kind)")
    if run("kubectl", "cluster-info", check=False, timeout=30).returncode != 0:
        pytest.skip("no Kubernetes cluster is reachable from kubectl (run `make e2e`)")
    crd = run("kubectl", "get", "crd", "ballsessions.rebound.dev", check=False)
    if crd.returncode != 0:
        pytest.skip("Rebound is not installed on the cluster (run `make deploy`)")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item) -> Iterator[None]:
    """Keep each phase's report on the item, so fixtures can dump diagnostics on failure."""
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    setattr(item, f"rep_{report.when}", report)
