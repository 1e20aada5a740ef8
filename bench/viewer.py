"""`make bench-view`: what the live view costs a session, as a Markdown table.

Each configuration runs three loopback sessions of the same length: without `--view-port`,
with the view served but nobody watching, and with one headless Chromium showing the page
(video and numbers) for the whole session. The table shows the frame rate the server
achieved, the matched share, the error and latency, the server's CPU seconds and the JPEGs
the view encoded; Chromium's own CPU is listed apart (it runs on the same machine).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import subprocess
import sys
import tempfile
import threading
import urllib.request
from pathlib import Path
from typing import IO, Any

import psutil

from bench.browser import Chromium, find_chromium
from bench.machine import describe
from bench.progress import Every, say
from bench.sessions import free_port

MODES = ("no view", "view, nobody watching", "view, one Chromium viewer")


def _cpu_seconds(pid: int, also_children: bool = False) -> float:
    try:
        proc = psutil.Process(pid)
        procs = [proc, *(proc.children(recursive=True) if also_children else [])]
        return sum(p.cpu_times().user + p.cpu_times().system for p in procs)
    except psutil.Error:
        return 0.0


def _lines(stream: IO[str], found: dict[str, str]) -> None:
    for line in stream:
        if line.startswith("live view: "):
            found["url"] = line.split("live view: ", 1)[1].strip()
        elif line.startswith("sent "):
            found["progress"] = line.strip()


def _stats(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(url + "stats.json", timeout=5) as response:
        return dict(json.loads(response.read()))


async def run(mode: str, size: tuple[int, int], fps: int, seconds: int) -> dict[str, Any]:
    """One session in `mode`; the summary plus CPU and view counters."""
    port = str(free_port())
    with tempfile.TemporaryDirectory() as tmp:
        summary_path = Path(tmp) / "summary.json"
        view = [] if mode == MODES[0] else ["--view-port", "0"]
        server = subprocess.Popen(
            [sys.executable, "-m", "peers.server", "--signaling-port", port,
             "--width", str(size[0]), "--height", str(size[1]), "--fps", str(fps),
             "--duration", str(seconds), "--summary-json", str(summary_path), *view],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        )  # fmt: skip
        client = subprocess.Popen(
            [sys.executable, "-m", "peers.client", "--signaling-port", port],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        found: dict[str, str] = {}
        assert server.stdout is not None
        threading.Thread(target=_lines, args=(server.stdout, found), daemon=True).start()
        cpu = {"server": 0.0, "browser": 0.0}
        encoded = 0
        every = Every(5.0)
        browser: Chromium | None = None
        try:
            while server.poll() is None:
                cpu["server"] = max(cpu["server"], _cpu_seconds(server.pid))
                if mode == MODES[2] and browser is None and "url" in found:
                    browser = Chromium(1280, 800)
                    await browser.__aenter__()
                    await browser.open(found["url"], settle_s=0.0)
                if browser is not None and browser._proc is not None:
                    cpu["browser"] = max(
                        cpu["browser"], _cpu_seconds(browser._proc.pid, also_children=True)
                    )
                if "url" in found:
                    with contextlib.suppress(OSError, ValueError, KeyError):
                        encoded = _stats(found["url"])["video_frames_encoded"]
                if every.due():
                    say(f"{mode}: {found.get('progress', 'connecting')}")
                await asyncio.sleep(0.5)
            client.wait(60)
        finally:
            if browser is not None:
                await browser.close()
            for proc in (server, client):
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
        if server.returncode != 0 or client.returncode != 0:
            codes = f"server exited {server.returncode}, client {client.returncode}"
            raise RuntimeError(f"{mode}: {codes}")
        summary: dict[str, Any] = json.loads(summary_path.read_text())
    return {**summary, "server_cpu_s": cpu["server"], "browser_cpu_s": cpu["browser"],
            "jpegs": encoded}  # fmt: skip


def _fmt(value: Any, digits: int) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def table(configs: list[tuple[int, int, int, int]]) -> str:
    """Markdown: one row per (configuration, mode)."""
    rows = [
        "| session | view | achieved fps | matched | error mean / p95 (px) "
        "| latency p50 / p95 (ms) | server CPU (s) | JPEGs encoded | Chromium CPU (s) |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for width, height, fps, seconds in configs:
        for number, mode in enumerate(MODES, 1):
            say(f"{width}x{height}@{fps}, {seconds} s: run {number}/{len(MODES)}, {mode}")
            s = asyncio.run(run(mode, (width, height), fps, seconds))
            sent = s["frames_sent"]
            jpegs = "-" if mode == MODES[0] else str(s["jpegs"])
            browser = f"{s['browser_cpu_s']:.1f}" if mode == MODES[2] else "-"
            rows.append(
                f"| {width}x{height}@{fps}, {seconds} s | {mode} | {_fmt(s['achieved_fps'], 2)} "
                f"| {100.0 * s['frames_matched'] / sent if sent else 0:.1f}% "
                f"| {_fmt(s['mean_error_px'], 4)} / {_fmt(s['p95_error_px'], 4)} "
                f"| {_fmt(s['latency_ms_p50'], 1)} / {_fmt(s['latency_ms_p95'], 1)} "
                f"| {s['server_cpu_s']:.1f} | {jpegs} | {browser} |"
            )
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    """Print the viewer-cost table."""
    parser = argparse.ArgumentParser(prog="python -m bench.viewer")
    parser.add_argument("--quick", action="store_true", help="short runs (smoke test)")
    args = parser.parse_args(argv)
    if find_chromium() is None:
        print("python -m bench.viewer: error: chromium is not installed (make test-tools)",
              file=sys.stderr)  # fmt: skip
        return 2
    seconds = 8 if args.quick else 30
    configs = [(640, 480, 30, seconds)] + ([] if args.quick else [(1280, 720, 60, seconds)])
    print(f"Machine: {describe()}\n")
    print("### Live view cost (loopback)\n")
    print(table(configs), flush=True)
    say("done")
    return 0


if __name__ == "__main__":
    sys.exit(main())
