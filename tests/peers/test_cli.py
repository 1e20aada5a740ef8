"""The peers' command lines: bad input is one line and exit 2; absent peers time out."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def run(module: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", f"peers.{module}", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def free_port() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return str(s.getsockname()[1])


@pytest.mark.parametrize(
    ("module", "args", "needle"),
    [
        ("server", ["--fps", "0"], "--fps 0"),
        ("server", ["--fps", "-5"], "--fps -5"),
        ("server", ["--radius", "300"], "does not fit a 640x480 frame"),
        ("server", ["--width", "10"], "--width 10"),
        ("server", ["--frames", "-1"], "--frames -1"),
        ("server", ["--duration", "-2"], "--duration -2"),
        ("server", ["--fps", "abc"], "invalid int value"),
        ("server", ["answer"], "invalid choice: 'answer'"),
        ("server", ["--connect-timeout", "0"], "--connect-timeout"),
        ("server", ["--summary-json", "/nonexistent/dir/s.json"], "directory does not exist"),
        ("server", ["--signaling", "carrier-pigeon"], "invalid choice"),
        ("server", ["--signaling", "configmap"], "needs --configmap"),
        ("server", ["--signaling-port", "70000"], "not a TCP port"),
        ("server", ["--ice-servers", "not json"], "--ice-servers"),
        ("server", ["--ice-servers", '[{"urls": []}]'], "--ice-servers"),
        ("client", ["offer"], "invalid choice: 'offer'"),
        ("client", ["--queue-size", "0"], "--queue-size 0"),
        ("client", ["--ice-servers", '{"urls": "x"}'], "--ice-servers"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(module: str, args: list[str], needle: str) -> None:
    result = run(module, *args)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"python -m peers.{module}: error: ")
    assert needle in lines[0]
    assert result.stdout == ""


@pytest.mark.parametrize("module", ["server", "client"])
def test_help(module: str) -> None:
    result = run(module, "--help")
    assert result.returncode == 0
    assert "--signaling-host" in result.stdout
    assert "--connect-timeout" in result.stdout


def test_server_times_out_when_no_client_shows_up() -> None:
    started = time.monotonic()
    result = run("server", "--signaling-port", free_port(), "--connect-timeout", "2")
    assert result.returncode == 3
    assert "no client connected within 2 s" in result.stderr
    assert "Traceback" not in result.stderr
    assert time.monotonic() - started < 20


def test_client_times_out_when_no_server_shows_up() -> None:
    result = run("client", "--signaling-port", free_port(), "--connect-timeout", "2")
    assert result.returncode == 3
    assert "within 2 s" in result.stderr
    assert "Traceback" not in result.stderr


def test_display_without_a_gui_says_so_and_runs_headless() -> None:
    result = run("client", "--display", "--signaling-port", free_port(), "--connect-timeout", "1")
    assert result.returncode == 3
    assert "headless" in result.stderr
