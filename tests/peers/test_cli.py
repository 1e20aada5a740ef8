"""The peers' command lines: bad input is one line and exit 2; absent peers time out."""

from __future__ import annotations

import json
import os
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
        ("server", ["--series", "/nonexistent/dir/s.jsonl"], "--series /nonexistent/dir"),
        ("server", ["--series", "/tmp"], "--series /tmp: is a directory"),
        ("server", ["--report", "/nonexistent/r.html"], "--report /nonexistent/r.html"),
        ("server", ["--signaling", "carrier-pigeon"], "invalid choice"),
        ("server", ["--signaling", "configmap"], "needs --configmap"),
        ("server", ["--signaling-port", "70000"], "not a TCP port"),
        ("server", ["--ice-servers", "not json"], "--ice-servers"),
        ("server", ["--ice-servers", '[{"urls": []}]'], "--ice-servers"),
        ("client", ["offer"], "invalid choice: 'offer'"),
        ("client", ["--queue-size", "0"], "--queue-size 0"),
        ("client", ["--ice-servers", '{"urls": "x"}'], "--ice-servers"),
        # issue 8, item 16: each of these was a traceback, or accepted
        ("server", ["--ice-servers", '[{"urls":["http://x"]}]'], "is not a STUN/TURN URL"),
        ("client", ["--ice-servers", '[{"urls":["stun:127.0.0.1:99999"]}]'], "port 99999"),
        ("client", ["--ice-servers", '[{"urls":["stun:h?transport=udp"]}]'], "transport"),
        ("server", ["--ice-servers", "[" + ",".join(['{"urls":["stun:h"]}'] * 9) + "]"], "8"),
        ("server", ["--summary-json", "/tmp"], "is a directory"),
        ("server", ["--connect-timeout", "nan"], "'nan' is not a finite number"),
        ("client", ["--connect-timeout", "inf"], "'inf' is not a finite number"),
        ("client", ["--connect-timeout", "-1"], "-1 is not > 0"),
        ("server", ["--metrics-interval", "nan"], "--metrics-interval: 'nan' is not a finite"),
        ("server", ["--metrics-interval", "0"], "0 is not > 0"),
        ("server", ["--radius", "nan"], "--radius: 'nan' is not a finite number"),
        ("server", ["--speed", "inf"], "--speed: 'inf' is not a finite number"),
        ("server", ["--duration", "nan"], "--duration: 'nan' is not a finite number"),
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


def test_a_summary_path_that_cannot_be_written_fails_before_the_session(tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        if os.access(locked, os.W_OK):
            pytest.skip("running as a user who can write anywhere (root)")
        result = run("server", "--summary-json", str(locked / "s.json"), timeout=30)
    finally:
        locked.chmod(0o700)
    assert result.returncode == 2
    assert "directory is not writable" in result.stderr


def configmap_args(kubeconfig: str) -> list[str]:
    """ConfigMap signaling flags (with --peer-configmap where the parser has it)."""
    from peers.client import build_parser

    extra = (
        ["--peer-configmap", "peer"] if "--peer-configmap" in build_parser().format_help() else []
    )
    return [
        "--signaling",
        "configmap",
        "--configmap",
        "own",
        "--namespace",
        "ns",
        *extra,
        "--kubeconfig",
        kubeconfig,
    ]


UNREACHABLE = {
    "apiVersion": "v1",
    "kind": "Config",
    "clusters": [{"name": "c", "cluster": {"server": "https://127.0.0.1:1"}}],
    "users": [{"name": "u", "user": {"token": "t"}}],
    "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
    "current-context": "x",
}


@pytest.mark.parametrize("module", ["server", "client"])
@pytest.mark.parametrize(
    ("content", "needle"),
    [
        ("this: is: not: yaml: [\n", "cannot use the signaling channel"),
        ("[]\n", "cannot use the signaling channel"),
        (json.dumps(UNREACHABLE), "127.0.0.1"),
        (None, "no Kubernetes credentials"),
    ],
    ids=["malformed", "not-a-mapping", "unreachable", "missing"],
)
def test_an_unusable_kubeconfig_is_one_line_and_exit_2(
    tmp_path: Path, module: str, content: str | None, needle: str
) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    if content is not None:
        kubeconfig.write_text(content)
    result = run(module, *configmap_args(str(kubeconfig)), "--connect-timeout", "5")
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"python -m peers.{module}: error: ")
    assert needle in lines[0]


@pytest.mark.parametrize(
    ("module", "shown"),
    [
        (
            "server",
            [
                "between 1 and 120 (default: 30)",  # --fps
                "between 128 and 3840 (default: 640)",
                "between 2 and 500 (default: 20.0)",
                "between 0 and 10000000 (default: 0)",
                "(> 0 and <= 86400) (default: 30.0)",  # --connect-timeout
                "> 0 and <= 3600 (default: 2.0)",  # --metrics-interval
                "(default: tcp-socket)",
                "(default: 127.0.0.1)",
                "(default: 1234)",
                "(default: [])",
                "130 interrupted before connecting",
            ],
        ),
        (
            "client",
            [
                "between 1 and 1024 (default: 4)",  # --queue-size
                "(> 0 and <= 86400) (default: 30.0)",
                "(default: tcp-socket)",
                "(default: 1234)",
                "130 interrupted before connecting",
            ],
        ),
    ],
)
def test_help_shows_every_default_and_bound(module: str, shown: list[str]) -> None:
    result = run(module, "--help")
    assert result.returncode == 0
    text = " ".join(result.stdout.split())
    for needle in shown:
        assert needle in text, needle


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


@pytest.mark.parametrize("module", ["client", "server"])
def test_display_without_a_gui_says_so_and_runs_headless(module: str) -> None:
    result = run(module, "--display", "--signaling-port", free_port(), "--connect-timeout", "1")
    assert result.returncode == 3
    lines = [line for line in result.stderr.splitlines() if line.startswith("--display")]
    assert lines == [
        "--display: this OpenCV build has no GUI (headless; `make install-gui` builds one); "
        "running without a window"
    ]
