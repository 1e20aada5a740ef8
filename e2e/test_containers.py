"""Container tier: the images, for real. Needs a Docker engine and the images from
`make images`; `.ci/run` builds them when it can start dockerd (scripts/ci-containers.sh).

- The operator image's own entry point runs against the emulated API server
  (tests/kube_harness.py, served on the docker network's gateway) and drives a BallSession
  end to end; each Pod it creates runs from the peer image as a container on that network
  (e2e/docker_kubelet.py). The tier only watches the BallSession's status and the pods, so
  it does not depend on how the peers signal.
- Two peer containers run a session over TCP signaling.
- The images run under any UID (none has a passwd entry), hold exactly the locked
  dependency versions, and carry none of the build host's private CAs.
Every container is locked down like a restricted Pod: non-root, read-only root filesystem,
no capabilities, no privilege escalation.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import av
import pytest
from certificates import (
    files_carrying,
    host_public_certificates,
    pem_certificates,
    private_cas,
    tar_certificates,
)
from conftest import docker_ready, run
from docker_kubelet import KUBECONFIG_PATH, LABEL, DockerKubelet, remove_containers
from kube_harness import Emulator, GarbageCollector, wait_for
from kubernetes import client
from lockfile import canonical, locked_versions
from machine_tools import require

PEER_IMAGE = os.environ.get("PEER_IMAGE", "rebound-peer:0.1.0")
OPERATOR_IMAGE = os.environ.get("OPERATOR_IMAGE", "rebound-operator:0.1.0")
HOST_CA_BUNDLE = Path(os.environ.get("PIP_CA_BUNDLE") or "/etc/ssl/certs/ca-certificates.crt")
LOCKED_DOWN = [
    "--read-only",
    "--tmpfs",
    "/tmp",
    "--cap-drop",
    "ALL",
    "--security-opt",
    "no-new-privileges",
]
NS = "rebound-e2e"
GROUP, VERSION, PLURAL = "rebound.dev", "v1alpha1", "ballsessions"
SMALL = {"width": 320, "height": 240, "radius": 12, "fps": 30}
ANY_UID = "123456:0"
"""An arbitrary UID with GID 0, as OpenShift's restricted SCC assigns."""
IDENTITY_PROBE = (
    "import getpass, os, pathlib, pwd; home = pathlib.Path.home(); "
    "(home / 'probe').write_text('ok'); "
    "print(os.getuid(), sum(p.pw_uid == os.getuid() for p in pwd.getpwall()), "
    "getpass.getuser(), home)"
)
"""Prints: uid, how many passwd entries it has, getpass.getuser(), a writable HOME."""
HEALTH_PROBE = (
    "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=2)"
)
DISTRIBUTIONS = (
    "import importlib.metadata as m, json; "
    "print(json.dumps({d.metadata['Name']: d.version for d in m.distributions()}))"
)
BUILD_TOOLS = {"pip", "setuptools"}
"""Locked for the build, uninstalled from the images."""


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
    remove_containers(name)
    run("docker", "network", "rm", name, check=False)


@dataclass
class EmulatedCluster:
    """The emulated API server on a docker network, with a kubelet running containers."""

    network: str
    emulator: Emulator
    kubeconfig: Path
    kubelet: DockerKubelet

    def start_operator(self, *docker_flags: str) -> str:
        """`docker run` the operator image's entry point (no POD_ID); wait until it is live."""
        name = f"{self.network}-operator"
        run(
            "docker",
            "run",
            "--detach",
            "--name",
            name,
            "--label",
            f"{LABEL}={self.network}",
            "--network",
            self.network,
            *LOCKED_DOWN,
            *docker_flags,
            "--volume",
            f"{self.kubeconfig}:{KUBECONFIG_PATH}:ro",
            "--env",
            f"KUBECONFIG={KUBECONFIG_PATH}",
            "--env",
            f"REBOUND_PEER_IMAGE={PEER_IMAGE}",
            OPERATOR_IMAGE,
            "--namespace",
            NS,
            "--pending-timeout",
            "60",
        )

        def live() -> bool:
            running = run("docker", "inspect", "-f", "{{.State.Running}}", name).stdout.strip()
            if running != "true":
                raise AssertionError(f"the operator container exited:\n{self.logs(name)}")
            probe = run("docker", "exec", name, "python", "-c", HEALTH_PROBE, check=False)
            return probe.returncode == 0

        self.wait(live, 90, "the operator's liveness", name)
        return name

    def wait(self, predicate: Any, timeout: float, what: str, operator: str) -> Any:
        """`wait_for`, adding the operator's and the pods' logs when it times out."""
        try:
            return wait_for(predicate, timeout, interval=0.5, what=what)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{self.logs(operator)}") from None

    @property
    def custom(self) -> client.CustomObjectsApi:
        return client.CustomObjectsApi(self.emulator.api)

    def create(self, name: str, **spec: Any) -> None:
        body = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "BallSession",
            "metadata": {"name": name, "namespace": NS},
            "spec": spec,
        }
        self.custom.create_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, body)

    def status(self, name: str) -> dict[str, Any]:
        session = self.custom.get_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, name)
        return dict(session.get("status") or {})

    def logs(self, operator: str) -> str:
        """The operator's and every pod's output (the tail of each), for failure messages."""
        text = "--- operator\n" + run("docker", "logs", operator, check=False).stderr[-3000:]
        for pod in self.kubelet.containers:
            text += f"\n--- {pod}\n" + self.kubelet.log(pod)[-1500:]
        return text


@pytest.fixture
def emulated(network: str, tmp_path: Path) -> Iterator[EmulatedCluster]:
    gateway = run(
        "docker", "network", "inspect", "-f", "{{(index .IPAM.Config 0).Gateway}}", network
    ).stdout.strip()
    emulator = Emulator(NS, host=gateway)
    collector = GarbageCollector(emulator)
    kubeconfig = emulator.write_kubeconfig(tmp_path / "kubeconfig")
    kubeconfig.chmod(0o644)  # read by the containers' users
    kubelet = DockerKubelet(emulator, kubeconfig, tmp_path, NS, network=network).start()
    try:
        yield EmulatedCluster(network, emulator, kubeconfig, kubelet)
    finally:
        kubelet.stop()
        remove_containers(network)  # the operator first: its watches hold the server open
        collector.stop()
        emulator.close()


def identity(container: str) -> list[str]:
    """IDENTITY_PROBE's answer inside a running container."""
    return run("docker", "exec", container, "python", "-c", IDENTITY_PROBE).stdout.split()


def test_the_operator_image_runs_a_session_with_peer_containers(
    emulated: EmulatedCluster,
) -> None:
    operator = emulated.start_operator()
    emulated.create("ball", frames=120, **SMALL)
    status = emulated.wait(
        lambda: (
            emulated.status("ball").get("phase") in ("Succeeded", "Failed")
            and emulated.status("ball")
        ),
        180,
        "the session to end",
        operator,
    )
    assert status["phase"] == "Succeeded", f"{status}\n{emulated.logs(operator)}"
    metrics = status["metrics"]
    print(json.dumps(metrics, indent=2))
    assert metrics["frames_sent"] == 120
    assert metrics["frames_matched"] >= 0.95 * metrics["frames_sent"]
    assert metrics["mean_error_px"] < 0.25
    # Both peers ran from the peer image as containers, as the Pod spec asked, and exited 0.
    for pod in (status["serverPod"], status["clientPod"]):
        container = emulated.kubelet.containers[pod]
        assert emulated.kubelet.exit_code(pod) == 0, emulated.logs(operator)
        config = json.loads(run("docker", "inspect", "-f", "{{json .Config}}", container).stdout)
        assert config["Image"] == PEER_IMAGE
        assert config["User"].split(":")[0] not in ("", "0", "root")
    # The operator ran as the image's own user, which has no passwd entry, without POD_ID.
    uid, entries, user, home = identity(operator)
    assert (uid, entries, user, home) == ("10001", "0", "rebound", "/tmp")
    env = json.loads(run("docker", "inspect", "-f", "{{json .Config.Env}}", operator).stdout)
    assert not [item for item in env if item.startswith("POD_ID=")]


def test_the_operator_image_runs_under_an_arbitrary_uid(emulated: EmulatedCluster) -> None:
    emulated.kubelet.hold.update({"held-server", "held-client"})  # no session needed here
    operator = emulated.start_operator("--user", ANY_UID)
    assert identity(operator) == ["123456", "0", "rebound", "/tmp"]
    emulated.create("held", **SMALL)
    emulated.wait(
        lambda: emulated.status("held").get("phase"), 60, "the operator to reconcile", operator
    )
    stop = run("docker", "stop", "--time", "20", operator, timeout=60)
    assert stop.returncode == 0
    code = run("docker", "inspect", "-f", "{{.State.ExitCode}}", operator).stdout.strip()
    assert code == "0", emulated.logs(operator)


def test_images_run_as_non_root(docker: None) -> None:
    for image in (PEER_IMAGE, OPERATOR_IMAGE):
        user = run("docker", "image", "inspect", "-f", "{{.Config.User}}", image).stdout.strip()
        assert user.split(":")[0] == "10001", image
        uid = run("docker", "run", "--rm", "--entrypoint", "id", image, "-u").stdout.strip()
        assert uid == "10001", image


@pytest.mark.parametrize("user", [None, ANY_UID])
@pytest.mark.parametrize("image", [PEER_IMAGE, OPERATOR_IMAGE])
def test_images_need_no_passwd_entry(docker: None, image: str, user: str | None) -> None:
    as_user = ["--user", user] if user else []
    probe = run(
        "docker",
        "run",
        "--rm",
        *LOCKED_DOWN,
        *as_user,
        "--entrypoint",
        "python",
        image,
        "-c",
        IDENTITY_PROBE,
        check=False,
    )
    assert probe.returncode == 0, probe.stderr
    uid = (user or "10001").split(":")[0]
    assert probe.stdout.split() == [uid, "0", "rebound", "/tmp"]


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


@pytest.mark.parametrize(("image", "extra"), [(PEER_IMAGE, "peer"), (OPERATOR_IMAGE, "operator")])
def test_images_hold_exactly_the_locked_versions(docker: None, image: str, extra: str) -> None:
    out = run("docker", "run", "--rm", "--entrypoint", "python", image, "-c", DISTRIBUTIONS).stdout
    installed = {canonical(name): version for name, version in json.loads(out).items()}
    assert installed.pop("rebound", None) is not None, "the project itself is not installed"
    locked = {n: v for n, v in locked_versions(extra).items() if n not in BUILD_TOOLS}
    assert installed == locked


@pytest.mark.parametrize("image", [PEER_IMAGE, OPERATOR_IMAGE])
def test_images_carry_none_of_the_build_hosts_private_cas(docker: None, image: str) -> None:
    if not HOST_CA_BUNDLE.is_file():
        pytest.skip(f"no CA bundle at {HOST_CA_BUNDLE} on the build host")
    host_bundle = HOST_CA_BUNDLE.read_bytes()
    container = run("docker", "create", image).stdout.strip()
    try:
        with subprocess.Popen(
            ["docker", "cp", f"{container}:/usr/share/ca-certificates", "-"],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        ) as copy:
            assert copy.stdout is not None
            image_public = tar_certificates(copy.stdout)
        private = private_cas(host_bundle, host_public_certificates() | image_public)
        if not private:
            pytest.skip(f"{HOST_CA_BUNDLE} holds no CA beyond the distribution's public set")
        bundle = subprocess.run(
            [
                "docker",
                "run",
                "--rm",
                "--entrypoint",
                "cat",
                image,
                "/etc/ssl/certs/ca-certificates.crt",
            ],
            capture_output=True,
            check=True,
            timeout=60,
        ).stdout
        assert bundle != host_bundle, f"{image}'s CA bundle is the build host's {HOST_CA_BUNDLE}"
        assert pem_certificates(bundle), "the image trusts no CA at all"
        with subprocess.Popen(["docker", "export", container], stdout=subprocess.PIPE) as export:
            assert export.stdout is not None
            carrying = files_carrying(export.stdout, private)
        assert not carrying, f"{image} carries the build host's private CAs in {carrying}"
    finally:
        run("docker", "rm", "--force", container, check=False)


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


REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def compose_command() -> list[str] | None:
    """`docker compose` (the v2 plugin) or `docker-compose` (v1), whichever works."""
    if run("docker", "compose", "version", check=False).returncode == 0:
        return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    return None


def test_compose_runs_a_local_session_with_the_live_view(docker: None, tmp_path: Path) -> None:
    """`docker compose up` of the repository's compose.yaml: a session between two peer
    containers, the live view on the published port while it runs, the recording after."""
    compose = compose_command()
    require(None if compose else "neither `docker compose` nor docker-compose (make test-tools)")
    assert compose is not None
    project = f"rebound-{uuid.uuid4().hex[:8]}"
    view_port = free_port()
    env = {**os.environ, "PEER_IMAGE": PEER_IMAGE, "DURATION": "10", "VIEW_PORT": str(view_port)}
    base = [*compose, "-f", str(REPO / "compose.yaml"), "-p", project]
    up = subprocess.Popen(
        [*base, "up", "--exit-code-from", "server"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        seen: dict[str, Any] = {}
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and up.poll() is None:
            with contextlib.suppress(OSError, ValueError):
                url = f"http://127.0.0.1:{view_port}/stats.json"
                with urllib.request.urlopen(url, timeout=2) as response:
                    seen = json.loads(response.read())
                if seen.get("phase") == "streaming" and seen.get("frames_matched", 0) > 30:
                    break
            time.sleep(0.5)
        output, _ = up.communicate(timeout=240)
        assert up.returncode == 0, output
        assert seen.get("frames_matched", 0) > 30, f"the live view never showed a session: {seen}"
        assert "Rebound session summary" in output and "recording written to" in output
        server = subprocess.run(
            [*base, "ps", "-q", "server"], env=env, capture_output=True, text=True, check=True
        ).stdout.strip()
        run("docker", "cp", f"{server}:/tmp/session.mp4", str(tmp_path / "session.mp4"))
        with av.open(str(tmp_path / "session.mp4")) as container:
            assert sum(1 for _ in container.decode(video=0)) > 100
    finally:
        if up.poll() is None:
            up.kill()
            up.communicate()
        subprocess.run([*base, "down", "--volumes"], env=env, capture_output=True, timeout=120)
