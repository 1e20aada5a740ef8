"""Container tier: a full session with the server and the client in two containers.

TCP signaling over a user-defined docker network, each container locked down like a
restricted Pod (non-root, read-only root filesystem, no capabilities). Needs a Docker engine
and the images from `make images`; `.ci/run` builds them when it can start dockerd.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import docker_ready, run

PEER_IMAGE = os.environ.get("PEER_IMAGE", "rebound-peer:0.1.0")
OPERATOR_IMAGE = os.environ.get("OPERATOR_IMAGE", "rebound-operator:0.1.0")
LOCKED_DOWN = [
    "--read-only",
    "--tmpfs",
    "/tmp",
    "--cap-drop",
    "ALL",
    "--security-opt",
    "no-new-privileges",
]


@pytest.fixture(scope="module")
def docker() -> None:
    problem = docker_ready()
    if problem:
        pytest.skip(f"container tier: {problem}")
    for image in (PEER_IMAGE, OPERATOR_IMAGE):
        if run("docker", "image", "inspect", image, check=False).returncode != 0:
            pytest.skip(f"container tier: image {image} not built (run `make images`)")


@pytest.fixture
def network(docker: None) -> Iterator[str]:
    name = f"rebound-{uuid.uuid4().hex[:8]}"
    run("docker", "network", "create", name)
    yield name
    run("docker", "network", "rm", name, check=False)


def test_images_run_as_non_root(docker: None) -> None:
    for image in (PEER_IMAGE, OPERATOR_IMAGE):
        user = run("docker", "image", "inspect", "-f", "{{.Config.User}}", image).stdout.strip()
        assert user.split(":")[0] == "10001", image
        uid = run("docker", "run", "--rm", "--entrypoint", "id", image, "-u").stdout.strip()
        assert uid == "10001", image


def test_operator_image_carries_no_media_stack(docker: None) -> None:
    probe = run(
        "docker",
        "run",
        "--rm",
        "--entrypoint",
        "python",
        OPERATOR_IMAGE,
        "-c",
        "import importlib.util as u; print([m for m in ('cv2', 'aiortc', 'av', 'numpy') "
        "if u.find_spec(m)]); import rebound_operator.handlers",
    )
    assert probe.stdout.strip() == "[]"


def test_a_session_between_two_containers(network: str, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    out.chmod(0o777)
    server, client = f"{network}-server", f"{network}-client"
    try:
        run(
            "docker",
            "run",
            "-d",
            "--name",
            server,
            "--network",
            network,
            *LOCKED_DOWN,
            "-v",
            f"{out}:/out",
            PEER_IMAGE,
            "python",
            "-m",
            "peers.server",
            "offer",
            "--signaling-host",
            "0.0.0.0",
            "--signaling-port",
            "1234",
            "--frames",
            "150",
            "--connect-timeout",
            "60",
            "--summary-json",
            "/out/summary.json",
        )
        run(
            "docker",
            "run",
            "-d",
            "--name",
            client,
            "--network",
            network,
            *LOCKED_DOWN,
            PEER_IMAGE,
            "python",
            "-m",
            "peers.client",
            "answer",
            "--signaling-host",
            server,
            "--signaling-port",
            "1234",
            "--connect-timeout",
            "60",
        )
        codes = [
            run("docker", "wait", name, timeout=180).stdout.strip() for name in (server, client)
        ]
        logs = run("docker", "logs", server, check=False).stdout
        assert codes == ["0", "0"], logs + run("docker", "logs", client, check=False).stderr
        for name in (server, client):
            user = run("docker", "inspect", "-f", "{{.Config.User}}", name).stdout.strip()
            assert user.startswith("10001")
        summary = json.loads((out / "summary.json").read_text())
        print(json.dumps(summary, indent=2))
        assert summary["frames_sent"] == 150
        assert summary["frames_matched"] >= 0.95 * summary["frames_sent"]
        assert summary["mean_error_px"] < 0.25
        assert "Rebound session summary" in logs
    finally:
        run("docker", "rm", "-f", server, client, check=False)
