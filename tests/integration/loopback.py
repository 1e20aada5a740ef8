"""Run the two peers as real processes on 127.0.0.1 over TCP signaling."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import psutil

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


TAG_VARIABLE = "REBOUND_TEST_TAG"


def peer(
    module: str,
    *args: str,
    cwd: Path | None = None,
    tag: str = "",
    new_session: bool = False,
    command: list[str] | None = None,
) -> subprocess.Popen[str]:
    """Start `python -m peers.<module> ...` with pipes for its output.

    `tag` marks the process and everything it starts (see `tagged`); `new_session` gives it
    its own process group, so a test can Ctrl-C it as a terminal would (`os.killpg`).
    `command` replaces `python -m peers.<module>` (a wrapper that patches the peer first).
    """
    env = {**os.environ, "PYTHONUNBUFFERED": "1", TAG_VARIABLE: tag}
    return subprocess.Popen(
        [*(command or [sys.executable, "-m", f"peers.{module}"]), *args],
        cwd=cwd or REPO,
        env=env,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=new_session,
    )


def tagged(tag: str) -> list[int]:
    """Live (non-zombie) processes started with `tag` (the peer and all its descendants)."""
    needle = f"{TAG_VARIABLE}={tag}".encode()
    found = []
    for proc in psutil.process_iter(["pid", "status"]):
        try:
            if proc.info["status"] == psutil.STATUS_ZOMBIE:
                continue
            environ = Path(f"/proc/{proc.pid}/environ").read_bytes()
        except (OSError, psutil.Error):
            continue
        if needle in environ.split(b"\0"):
            found.append(proc.pid)
    return found


def wait_untagged(tag: str, timeout: float = 10.0) -> list[int]:
    """Pids still carrying `tag` after `timeout` seconds (killed afterwards, for hygiene)."""
    deadline = time.monotonic() + timeout
    while (alive := tagged(tag)) and time.monotonic() < deadline:
        time.sleep(0.1)
    for pid in alive:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
    return alive


def children_of(proc: subprocess.Popen[str]) -> list[int]:
    """Current child pids of a process (e.g. the client's process_a)."""
    try:
        return [c.pid for c in psutil.Process(proc.pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def wait_gone(pids: list[int], timeout: float = 10.0) -> list[int]:
    """Pids still alive (not zombies) after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    alive = pids
    while time.monotonic() < deadline:
        alive = []
        for pid in pids:
            try:
                if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                    alive.append(pid)
            except psutil.NoSuchProcess:
                continue
        if not alive:
            return []
        time.sleep(0.1)
    return alive


@dataclass
class Finished:
    """Exit code and output of one peer process."""

    code: int
    stdout: str
    stderr: str


def finish(proc: subprocess.Popen[str], timeout: float = 60.0) -> Finished:
    """Wait for a peer; kill it (and fail loudly) if it hangs."""
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        raise AssertionError(f"peer hung:\n{out}\n{err}") from None
    return Finished(proc.returncode, out, err)


@dataclass
class Session:
    """A running pair of peers and where the server writes its summary."""

    server: subprocess.Popen[str]
    client: subprocess.Popen[str]
    summary_path: Path

    def summary(self) -> dict[str, Any]:
        """The server's summary JSON."""
        return dict(json.loads(self.summary_path.read_text()))

    def interrupt(self, which: str, sig: int = signal.SIGINT) -> None:
        """Send a signal to one peer."""
        getattr(self, which).send_signal(sig)


def start_session(
    tmp: Path,
    server_args: list[str],
    client_args: list[str] = (),  # type: ignore[assignment]
    *,
    client_command: list[str] | None = None,
    tag: str = "",
) -> Session:
    """Start server then client on a fresh port; the summary goes to tmp/summary.json."""
    port = str(free_port())
    summary = tmp / "summary.json"
    server = peer(
        "server", "offer", "--signaling-port", port, "--summary-json", str(summary), *server_args
    )
    client = peer(
        "client", "answer", "--signaling-port", port, *client_args, command=client_command, tag=tag
    )
    return Session(server, client, summary)


def wait_for_line(stream: IO[str], needle: str, timeout: float = 60.0) -> list[str]:
    """Read `stream` until a line containing `needle` (all lines read so far)."""
    lines: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = stream.readline()
        if not line:
            break
        lines.append(line)
        if needle in line:
            return lines
    raise AssertionError(f"{needle!r} never appeared in:\n{''.join(lines)}")
