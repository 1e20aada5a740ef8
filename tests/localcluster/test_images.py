"""The process node runs what the project's Dockerfiles say, with the venv substituted."""

from __future__ import annotations

from pathlib import Path

import pytest

from localcluster.images import ImageCatalog, parse_dockerfile, repository_name

DOCKERFILE = """\
ARG BASE_IMAGE=python:3.11
FROM ${BASE_IMAGE} AS builder
ENV BUILD_ONLY=1
ENTRYPOINT ["builder"]
FROM ${BASE_IMAGE}
ENV PATH=/opt/rebound/bin:$PATH \\
    PYTHONSAFEPATH=1
ENV LEGACY value with spaces
USER 10001:10001
WORKDIR /tmp
CMD ["python", "-m", "peers.server"]
ENTRYPOINT ["python", "-m", "rebound_operator"]
"""


def test_only_the_final_stage_counts() -> None:
    config = parse_dockerfile(DOCKERFILE, {"PATH": "/usr/bin"})
    assert config.entrypoint == ["python", "-m", "rebound_operator"]
    assert config.cmd == []  # a later ENTRYPOINT resets CMD, as in Docker
    assert config.user == "10001:10001"
    assert config.workdir == "/tmp"
    assert config.env["PATH"] == "/opt/rebound/bin:/usr/bin"
    assert config.env["PYTHONSAFEPATH"] == "1"
    assert config.env["LEGACY"] == "value with spaces"
    assert "BUILD_ONLY" not in config.env


def test_shell_form_runs_through_sh() -> None:
    config = parse_dockerfile("FROM x\nCMD echo hi\n")
    assert config.cmd == ["/bin/sh", "-c", "echo hi"]


@pytest.mark.parametrize(
    ("image", "name"),
    [
        ("rebound-peer:0.1.0", "rebound-peer"),
        ("ghcr.io/rebound-dev/rebound-operator:0.1.0", "rebound-operator"),
        ("localhost:5000/rebound-peer@sha256:abc", "rebound-peer"),
        ("busybox", "busybox"),
    ],
)
def test_repository_name(image: str, name: str) -> None:
    assert repository_name(image) == name


def test_the_real_dockerfiles_resolve_with_the_venv(tmp_path: Path) -> None:
    catalog = ImageCatalog(tmp_path / "venv")
    peer = catalog.resolve("rebound-peer:0.1.0")
    operator = catalog.resolve("ghcr.io/rebound-dev/rebound-operator:0.1.0")
    assert peer is not None and operator is not None
    assert operator.entrypoint[-2:] == ["-m", "rebound_operator"]
    for config in (peer, operator):
        assert config.env["PATH"].startswith(f"{tmp_path}/venv/bin:")
        assert config.user.split(":")[0].isdigit() and config.user.split(":")[0] != "0"
    assert catalog.resolve("nginx:latest") is None
