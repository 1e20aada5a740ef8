"""Run the two peers as processes on 127.0.0.1 and collect the server's summary."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import psutil

from bench.lossy import SERVER_ADDRESS, LossyLink
from bench.progress import Every, say


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _tree_rss(pid: int) -> int:
    try:
        p = psutil.Process(pid)
        return int(p.memory_info().rss + sum(c.memory_info().rss for c in p.children(True)))
    except psutil.Error:
        return 0


def _cpu_seconds(pid: int) -> float | None:
    try:
        times = psutil.Process(pid).cpu_times()
    except psutil.Error:
        return None
    return float(times.user + times.system)


def _process_a_of(pid: int) -> int | None:
    try:
        children = psutil.Process(pid).children()
    except psutil.Error:
        return None
    found = [c.pid for c in children if "spawn_main" in " ".join(c.cmdline())]
    return found[0] if found else None


@dataclass
class _Peer:
    """One peer process, its peak RSS and its CPU seconds as last seen."""

    proc: subprocess.Popen[str]
    peak_rss: int = 0
    cpu_total: float | None = None
    returncode: int | None = None

    def sample(self) -> None:
        self.peak_rss = max(self.peak_rss, _tree_rss(self.proc.pid))

    def reap(self) -> bool:
        """Collect the exit status and total CPU (rusage, waited-for children included)."""
        if self.returncode is not None:
            return True
        pid, status, usage = os.wait4(self.proc.pid, os.WNOHANG)
        if pid == 0:
            return False
        self.returncode = self.proc.returncode = os.waitstatus_to_exitcode(status)
        self.cpu_total = usage.ru_utime + usage.ru_stime
        return True


def _streaming_started(stderr: IO[str], started: threading.Event, lines: list[str]) -> None:
    for line in stderr:
        lines.append(line)
        if "streaming" in line:
            started.set()


def _keep_last_progress(stream: IO[str], last: list[str]) -> None:
    for line in stream:
        if line.startswith("sent "):
            last[:] = [line.strip()]


def run_session(
    server_args: list[str],
    *,
    show_output: bool = False,
    timeout: float = 600,
    label: str = "session",
    link: LossyLink | None = None,
) -> dict[str, Any]:
    """One complete session; returns the summary plus `server_rss_mb` / `client_rss_mb` and
    `cpu` (CPU seconds per second of streaming of `server`, `client` and `process_a`).

    With `link`, the server and the client run in its two network namespaces. Every 5 s it
    says on stderr how far the server is (its own progress line).
    """
    port = str(free_port())
    host = SERVER_ADDRESS if link is not None else "127.0.0.1"
    signaling = ["--signaling-host", host, "--signaling-port", port]
    with tempfile.TemporaryDirectory() as tmp:
        summary_path = Path(tmp) / "summary.json"
        out = None if show_output else subprocess.DEVNULL
        server_argv = [sys.executable, "-m", "peers.server", "offer", *signaling]
        server_argv += ["--summary-json", str(summary_path), *server_args]
        client_argv = [sys.executable, "-m", "peers.client", "answer", *signaling]
        if link is not None:
            server_argv, client_argv = (
                link.wrap("server", server_argv),
                link.wrap("client", client_argv),
            )
        server = _Peer(
            subprocess.Popen(
                server_argv,
                stdout=None if show_output else subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
        client = _Peer(
            subprocess.Popen(client_argv, stdout=subprocess.DEVNULL, stderr=out, text=True)
        )
        started, log = threading.Event(), []
        assert server.proc.stderr is not None
        reader = threading.Thread(
            target=_streaming_started, args=(server.proc.stderr, started, log), daemon=True
        )
        reader.start()
        last: list[str] = []
        if server.proc.stdout is not None:
            threading.Thread(
                target=_keep_last_progress, args=(server.proc.stdout, last), daemon=True
            ).start()
        every = Every(5.0)
        at_start: dict[str, float] = {}
        process_a: int | None = None
        process_a_cpu = 0.0
        deadline = time.monotonic() + timeout
        try:
            while not (server.reap() and client.reap()) and time.monotonic() < deadline:
                server.sample()
                client.sample()
                process_a = process_a or _process_a_of(client.proc.pid)
                if process_a is not None:
                    process_a_cpu = max(process_a_cpu, _cpu_seconds(process_a) or 0.0)
                if started.is_set() and not at_start:
                    at_start = {
                        "server": _cpu_seconds(server.proc.pid) or 0.0,
                        "client": _cpu_seconds(client.proc.pid) or 0.0,
                        "process_a": process_a_cpu,
                    }
                if every.due() and not show_output:  # else the server's own lines are shown
                    say(f"{label}: {last[0] if last else 'connecting'}")
                time.sleep(0.2)
        finally:
            for peer in (server, client):
                if peer.returncode is None:
                    peer.proc.kill()
                    peer.proc.wait()
            reader.join(5)
        if server.returncode != 0 or client.returncode != 0:
            tail = "".join(log[-3:]).strip()
            raise RuntimeError(
                f"server exited {server.returncode}, client {client.returncode}: {tail}"
            )
        summary: dict[str, Any] = json.loads(summary_path.read_text())
    summary["server_rss_mb"] = round(server.peak_rss / 2**20, 1)
    summary["client_rss_mb"] = round(client.peak_rss / 2**20, 1)
    summary["cpu"] = _cpu_per_second(summary, at_start, server, client, process_a_cpu)
    return summary


def _cpu_per_second(
    summary: dict[str, Any],
    at_start: dict[str, float],
    server: _Peer,
    client: _Peer,
    process_a_cpu: float,
) -> dict[str, float] | None:
    """CPU seconds each process used from the start of streaming to its exit, per second of
    streaming (frames sent / achieved fps); the client's own excludes process_a's."""
    fps = summary.get("achieved_fps")
    if not at_start or not fps or server.cpu_total is None or client.cpu_total is None:
        return None
    seconds = summary["frames_sent"] / fps
    own_client = client.cpu_total - process_a_cpu  # rusage includes the joined process_a
    return {
        "server": round((server.cpu_total - at_start["server"]) / seconds, 3),
        "client": round((own_client - at_start["client"]) / seconds, 3),
        "process_a": round((process_a_cpu - at_start["process_a"]) / seconds, 3),
    }


FAILURES = (
    "kill -9 client",
    "SIGSTOP client",
    "kill -9 server",
    "SIGSTOP server",
    "kill -9 process_a",
)


def _peer(module: str, port: str, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", f"peers.{module}", "--signaling-port", port, *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def detect_failure(failure: str, *, warmup_s: float = 5.0) -> dict[str, Any]:
    """Inject `failure` into a running session; how long the surviving peer takes to exit.

    Returns `peer` (the one watched), `seconds`, `code` and `message` (its last stderr line).
    """
    port = str(free_port())
    server = _peer("server", port, "--duration", "0")
    client = _peer("client", port)
    procs = {"server": server, "client": client}
    victim = "server" if "server" in failure else "client"
    watched = procs["client" if victim == "server" else "server"]
    try:
        time.sleep(warmup_s)
        target = procs[victim]
        if failure.endswith("process_a"):
            watched = client
            children = psutil.Process(client.pid).children()
            process_a = [c for c in children if "spawn_main" in " ".join(c.cmdline())]
            os.kill(process_a[0].pid, signal.SIGKILL)
        else:
            target.send_signal(signal.SIGKILL if failure.startswith("kill") else signal.SIGSTOP)
        started = time.monotonic()
        _, err = watched.communicate(timeout=120)
        seconds = time.monotonic() - started
    finally:
        for proc in procs.values():
            with contextlib.suppress(OSError):
                proc.send_signal(signal.SIGCONT)
            if proc.poll() is None:
                proc.kill()
            proc.communicate()
    name = "client" if watched is client else "server"
    lines = [line for line in err.splitlines() if "error:" in line]
    return {
        "peer": name,
        "seconds": round(seconds, 2),
        "code": watched.returncode,
        "message": lines[-1].split("error: ", 1)[1] if lines else "",
    }
