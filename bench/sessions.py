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
from pathlib import Path
from typing import IO, Any

import psutil

from bench.progress import Every, say


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _peak_rss(proc: subprocess.Popen[Any], peak: dict[int, int]) -> None:
    try:
        p = psutil.Process(proc.pid)
        total = p.memory_info().rss + sum(c.memory_info().rss for c in p.children(True))
    except psutil.Error:
        return
    peak[proc.pid] = max(peak.get(proc.pid, 0), total)


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
) -> dict[str, Any]:
    """One complete session; returns the summary plus `server_rss_mb` / `client_rss_mb`.

    Every 5 s it says on stderr how far the server is (its own progress line).
    """
    port = str(free_port())
    with tempfile.TemporaryDirectory() as tmp:
        summary_path = Path(tmp) / "summary.json"
        out = None if show_output else subprocess.DEVNULL
        server = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "peers.server",
                "offer",
                "--signaling-host",
                "127.0.0.1",
                "--signaling-port",
                port,
                "--summary-json",
                str(summary_path),
                *server_args,
            ],
            stdout=None if show_output else subprocess.PIPE,
            stderr=out,
            text=True,
        )
        last: list[str] = []
        if server.stdout is not None:
            threading.Thread(
                target=_keep_last_progress, args=(server.stdout, last), daemon=True
            ).start()
        client = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "peers.client",
                "answer",
                "--signaling-host",
                "127.0.0.1",
                "--signaling-port",
                port,
            ],
            stdout=subprocess.DEVNULL,
            stderr=out,
        )
        peak: dict[int, int] = {}
        deadline = time.monotonic() + timeout
        every = Every(5.0)
        try:
            while server.poll() is None and time.monotonic() < deadline:
                _peak_rss(server, peak)
                _peak_rss(client, peak)
                if every.due():
                    say(f"{label}: {last[0] if last else 'connecting'}")
                time.sleep(0.5)
            server.wait(max(1.0, deadline - time.monotonic()))
            client.wait(30)
        finally:
            for proc in (server, client):
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
        if server.returncode != 0 or client.returncode != 0:
            raise RuntimeError(f"server exited {server.returncode}, client {client.returncode}")
        summary: dict[str, Any] = json.loads(summary_path.read_text())
    summary["server_rss_mb"] = round(peak.get(server.pid, 0) / 2**20, 1)
    summary["client_rss_mb"] = round(peak.get(client.pid, 0) / 2**20, 1)
    return summary


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
