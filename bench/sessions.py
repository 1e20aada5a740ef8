"""Run the two peers as processes on 127.0.0.1 and collect the server's summary."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil


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


def run_session(
    server_args: list[str], *, show_output: bool = False, timeout: float = 600
) -> dict[str, Any]:
    """One complete session; returns the summary plus `server_rss_mb` / `client_rss_mb`."""
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
            stdout=out,
            stderr=out,
        )
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
        try:
            while server.poll() is None and time.monotonic() < deadline:
                _peak_rss(server, peak)
                _peak_rss(client, peak)
                time.sleep(0.5)
            server.wait(max(1.0, deadline - time.monotonic()))
            client.wait(30)
        finally:
            for proc in (server, client):
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
        if server.returncode != 0:
            raise RuntimeError(f"server exited {server.returncode}")
        summary: dict[str, Any] = json.loads(summary_path.read_text())
    summary["server_rss_mb"] = round(peak.get(server.pid, 0) / 2**20, 1)
    summary["client_rss_mb"] = round(peak.get(client.pid, 0) / 2**20, 1)
    return summary
