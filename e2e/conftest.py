"""Shared helpers for the e2e tiers (kind cluster, containers). Not part of `make test`."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
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


def unavailable(why: str) -> None:
    """Skip with `why`; under CI=true a cluster tier (local or kind) that cannot reach its
    cluster is a failure, never a skip."""
    tier = os.environ.get("REBOUND_E2E")
    if os.environ.get("CI") == "true" and tier:
        name = "local-cluster" if tier == "local" else "kind"
        pytest.fail(f"the {name} tier must run in CI: {why}", pytrace=False)
    pytest.skip(why)


@pytest.fixture(scope="session")
def cluster() -> None:
    """Skip unless kubectl reaches a cluster (kind or `make cluster-up`) with Rebound."""
    if missing_tools("kubectl"):
        unavailable("e2e needs kubectl")
    if run("kubectl", "cluster-info", check=False, timeout=30).returncode != 0:
        unavailable(
            "no Kubernetes cluster is reachable from kubectl "
            "(`make cluster-up && make e2e-local`, or `make e2e` with kind)"
        )
    crd = run("kubectl", "get", "crd", "ballsessions.rebound.dev", check=False)
    if crd.returncode != 0:
        unavailable("Rebound is not installed on the cluster (`make deploy`)")


@pytest.fixture
def sessions(request: pytest.FixtureRequest, cluster: None) -> Iterator[list[str]]:
    """Names of the BallSessions a test creates: dumped if it fails, deleted afterwards."""
    from helpers import NS, dump

    names: list[str] = []
    yield names
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:
        for name in names[:2]:
            print(dump(name))
    for name in names:
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


def new_name(prefix: str = "e2e") -> str:
    """A fresh BallSession name."""
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item) -> Iterator[None]:
    """Keep each phase's report on the item, so fixtures can dump diagnostics on failure."""
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    setattr(item, f"rep_{report.when}", report)
