"""The Docker engine kind runs on: dockerd installed, configured and answering.

Where the host's capability bounding set lacks capabilities (`host.lacking_capabilities`),
`docker run --privileged` fails, so the runc wrapper (`runc_wrapper.py`) is installed and made
dockerd's default runtime (kind cannot pass `--runtime`). A running dockerd reloads its
runtimes on SIGHUP, so changing the configuration never restarts it (nor its containers).
Elsewhere nothing is installed and a wrapper left by an earlier run is unregistered.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kindnode import host, runc_wrapper

RUNTIME_NAME = "rebound-runc"
WRAPPER = Path("/usr/local/libexec/rebound/runc")
DAEMON_JSON = Path("/etc/docker/daemon.json")
DOCKERD_PID = Path("/var/run/docker.pid")
DOCKERD_LOG = Path(os.environ.get("DOCKERD_LOG", "/tmp/rebound-dockerd.log"))
Say = Callable[[str], None]


class EngineError(RuntimeError):
    """The engine cannot be made to run kind here; the message is one line."""


def merged_config(current: dict[str, Any], wrapper: str | None) -> dict[str, Any]:
    """dockerd's configuration with our runtime as the default (`wrapper` set) or without
    it (None); every other setting is kept."""
    config: dict[str, Any] = json.loads(json.dumps(current))
    runtimes = dict(config.get("runtimes") or {})
    if wrapper is not None:
        runtimes[RUNTIME_NAME] = {"path": wrapper}
        config["runtimes"] = runtimes
        config["default-runtime"] = RUNTIME_NAME
        return config
    runtimes.pop(RUNTIME_NAME, None)
    if runtimes:
        config["runtimes"] = runtimes
    else:
        config.pop("runtimes", None)
    if config.get("default-runtime") == RUNTIME_NAME:
        del config["default-runtime"]
    return config


def wrapper_script(interpreter: str) -> str:
    """The wrapper as installed: runc_wrapper.py's source under a fixed interpreter."""
    source = Path(runc_wrapper.__file__).read_text()
    return f"#!{interpreter} -I\n{source}"


def system_python() -> str:
    """An interpreter that outlives any checkout or virtualenv, for the installed wrapper."""
    if Path("/usr/bin/python3").exists():
        return "/usr/bin/python3"
    return os.path.realpath(getattr(sys, "_base_executable", sys.executable))


def install_wrapper() -> bool:
    """Write the wrapper script (idempotent); True if it changed."""
    text = wrapper_script(system_python())
    if WRAPPER.exists() and WRAPPER.read_text() == text:
        return False
    WRAPPER.parent.mkdir(parents=True, exist_ok=True)
    partial = WRAPPER.with_suffix(".partial")
    partial.write_text(text)
    partial.chmod(0o755)
    partial.rename(WRAPPER)
    return True


def read_config() -> dict[str, Any]:
    """/etc/docker/daemon.json, or {} when there is none."""
    if not DAEMON_JSON.exists():
        return {}
    try:
        loaded = json.loads(DAEMON_JSON.read_text() or "{}")
    except ValueError as error:
        raise EngineError(f"{DAEMON_JSON} is not valid JSON: {error}") from None
    if not isinstance(loaded, dict):
        raise EngineError(f"{DAEMON_JSON} is not a JSON object")
    return dict(loaded)


def configure(say: Say) -> bool:
    """Install or remove the wrapper runtime as this host needs; True if dockerd's
    configuration changed."""
    lacking = host.lacking_capabilities()
    wrapper = str(WRAPPER) if lacking else None
    if lacking and install_wrapper():
        say(f"installed {WRAPPER}: strips {', '.join(lacking)} (not in this host's bounding set)")
    current = read_config()
    wanted = merged_config(current, wrapper)
    if wanted == current:
        return False
    DAEMON_JSON.parent.mkdir(parents=True, exist_ok=True)
    DAEMON_JSON.write_text(json.dumps(wanted, indent=2) + "\n")
    say(f"{DAEMON_JSON}: default runtime {wanted.get('default-runtime', 'runc')}")
    return True


def answers() -> bool:
    """True when `docker info` gets an answer from the engine."""
    result = subprocess.run(["docker", "info"], capture_output=True, timeout=60)
    return result.returncode == 0


def default_runtime() -> str:
    """The engine's default runtime as it reports it."""
    result = subprocess.run(
        ["docker", "info", "--format", "{{.DefaultRuntime}}"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    return result.stdout.strip()


def _dockerd_pid() -> int | None:
    try:
        pid = int(DOCKERD_PID.read_text().strip())
        os.kill(pid, 0)
    except (OSError, ValueError):
        return None
    return pid


def start(say: Say) -> None:
    """Start dockerd in the background and wait until it answers (EngineError if not)."""
    if shutil.which("dockerd") is None:
        raise EngineError("dockerd is not installed (apt-get install docker.io)")
    if os.geteuid() != 0:
        raise EngineError("no Docker engine answers and only root can start dockerd")
    with DOCKERD_LOG.open("a") as log:
        subprocess.Popen(["dockerd"], stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    say(f"started dockerd (log {DOCKERD_LOG})")
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if answers():
            return
        time.sleep(1)
    tail = DOCKERD_LOG.read_text().strip().splitlines()[-1:] or ["(empty log)"]
    raise EngineError(f"dockerd did not come up in 90 s: {tail[0]}")


def reload(expected_runtime: str) -> None:
    """SIGHUP a running dockerd so it reads its configuration, and wait until it did."""
    pid = _dockerd_pid()
    if pid is None:
        raise EngineError(
            f"dockerd runs but {DOCKERD_PID} names no live process: restart it yourself so "
            f"it reads {DAEMON_JSON}"
        )
    os.kill(pid, signal.SIGHUP)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if default_runtime() == expected_runtime:
            return
        time.sleep(0.5)
    raise EngineError(
        f"dockerd did not take default runtime {expected_runtime} from {DAEMON_JSON} "
        f"after SIGHUP; see {DOCKERD_LOG}"
    )


def ensure(say: Say) -> None:
    """A configured engine that answers: configure, then start or reload dockerd."""
    if shutil.which("docker") is None:
        raise EngineError("the docker CLI is not installed (apt-get install docker.io)")
    changed = configure(say) if os.geteuid() == 0 else False
    expected = read_config().get("default-runtime", "runc")
    if not answers():
        start(say)
    elif changed or default_runtime() != expected:
        reload(expected)
        say(f"dockerd reloaded its configuration (default runtime {expected})")
