"""A kubelet for the emulated API server that runs each Pod as a docker container.

`DockerKubelet` is `FakeKubelet` (tests/kube_harness.py: the polling, the Pending → Running
→ Succeeded/Failed status reports, the exit codes) with one difference: a pod's container is
`docker run` of the pod's own image, command, args and env on a user-defined docker network,
locked down as its securityContext asks (user, read-only root filesystem, dropped
capabilities, no privilege escalation, emptyDir volumes as tmpfs, memory/cpu limits).
The `docker run` client stays in the foreground, so its exit code is the container's.

The pods reach the emulated API server through a kubeconfig mounted read-only at
`KUBECONFIG_PATH` (in a cluster they use their service account instead).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
from dataclasses import dataclass, field
from typing import IO, Any

from kube_harness import FakeKubelet, RunningPod

KUBECONFIG_PATH = "/var/run/rebound/kubeconfig"
LABEL = "dev.rebound.e2e"
"""Label on every container the tier starts (value: its docker network), for cleanup."""
STOP_GRACE_SECONDS = 10

_MEMORY_UNITS = {"": 1, "k": 1000, "M": 1000**2, "G": 1000**3, "Ki": 1024, "Mi": 1024**2}
_MEMORY_UNITS["Gi"] = 1024**3


def memory_bytes(quantity: str | int) -> int:
    """A Kubernetes memory quantity ("256Mi", "1G", 1048576) in bytes."""
    match = re.fullmatch(r"(\d+)(|k|M|G|Ki|Mi|Gi)", str(quantity))
    if match is None:
        raise ValueError(f"unsupported memory quantity {quantity!r}")
    return int(match[1]) * _MEMORY_UNITS[match[2]]


def cpus(quantity: str | int) -> float:
    """A Kubernetes CPU quantity ("500m", "2", 1) in CPUs."""
    text = str(quantity)
    return int(text[:-1]) / 1000 if text.endswith("m") else float(text)


def lockdown_flags(pod: dict[str, Any], container: dict[str, Any]) -> list[str]:
    """`docker run` flags for what the Pod's securityContext, volumes and limits ask."""
    context = {
        **(pod["spec"].get("securityContext") or {}),
        **(container.get("securityContext") or {}),
    }
    flags: list[str] = []
    if "runAsUser" in context:
        flags += ["--user", f"{context['runAsUser']}:{context.get('runAsGroup', 0)}"]
    if context.get("readOnlyRootFilesystem"):
        flags.append("--read-only")
    if "ALL" in ((context.get("capabilities") or {}).get("drop") or []):
        flags += ["--cap-drop", "ALL"]
    if context.get("allowPrivilegeEscalation") is False:
        flags += ["--security-opt", "no-new-privileges"]
    empty_dirs = {v["name"] for v in pod["spec"].get("volumes") or [] if "emptyDir" in v}
    for mount in container.get("volumeMounts") or []:
        if mount["name"] in empty_dirs:
            flags += ["--tmpfs", mount["mountPath"]]
    limits = (container.get("resources") or {}).get("limits") or {}
    if "memory" in limits:
        flags += ["--memory", str(memory_bytes(limits["memory"]))]
    if "cpu" in limits:
        flags += ["--cpus", f"{cpus(limits['cpu']):g}"]
    return flags


def docker(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run a docker CLI command (never raises on a non-zero exit)."""
    return subprocess.run(
        ["docker", *args], capture_output=True, text=True, timeout=timeout, check=False
    )


@dataclass
class DockerKubelet(FakeKubelet):
    """FakeKubelet whose pods run as containers of their image on `network`."""

    network: str = ""
    containers: dict[str, str] = field(default_factory=dict)
    """Pod name → container name, for every pod started."""

    def _spawn(
        self, pod: dict[str, Any], out: IO[bytes], env: dict[str, str]
    ) -> subprocess.Popen[bytes]:
        name = pod["metadata"]["name"]
        container = pod["spec"]["containers"][0]
        container_name = f"{self.network}-{name}"
        self.containers[name] = container_name
        # Only the env the Pod declares (resolved by FakeKubelet, fieldRefs included); the
        # values go through the docker client's environment, not its command line.
        declared = [item["name"] for item in container.get("env") or []]
        env = {var: env[var] for var in declared if var in env}
        command = list(container.get("command") or [])
        argv = [
            "docker",
            "run",
            "--name",
            container_name,
            "--label",
            f"{LABEL}={self.network}",
            "--network",
            self.network,
            "--pull",
            "never",
            *lockdown_flags(pod, container),
            "--volume",
            f"{self.kubeconfig}:{KUBECONFIG_PATH}:ro",
            "--env",
            f"KUBECONFIG={KUBECONFIG_PATH}",
            *[flag for var in env for flag in ("--env", var)],
            *(["--entrypoint", command[0]] if command else []),
            container["image"],
            *command[1:],
            *(container.get("args") or []),
        ]
        return subprocess.Popen(
            argv,
            env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **env},
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def _terminate(self, running: RunningPod, sig: int = signal.SIGTERM) -> None:
        """Stop the pod's container like a kubelet: SIGTERM, SIGKILL after the grace period."""
        if running.process.poll() is None:
            container = self.containers[running.name]
            docker("stop", "--time", str(STOP_GRACE_SECONDS), container, timeout=60)
            try:
                running.process.wait(30)
            except subprocess.TimeoutExpired:  # e.g. stopped while still being created
                docker("rm", "--force", container)
                running.process.kill()
                running.process.wait()

    def kill(self, name: str) -> None:
        """SIGKILL a pod's container (the pod then reports Failed, exit 137)."""
        docker("kill", self.containers[name])

    def exit_code(self, name: str) -> int | None:
        """The exit code docker recorded for a pod's container (None if it never ran)."""
        if name not in self.containers:
            return None
        state = docker("inspect", "-f", "{{.State.ExitCode}}", self.containers[name])
        return int(state.stdout) if state.returncode == 0 else None


def remove_containers(network: str) -> None:
    """Remove every container the tier started on `network` (running or not)."""
    found = docker("ps", "-aq", "--filter", f"label={LABEL}={network}").stdout.split()
    if found:
        docker("rm", "-f", *found)
