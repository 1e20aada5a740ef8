"""`make screenshots`: the documentation's pictures, from a real session.

Runs one loopback session (640x480 at 30 fps) with the live view and a report, photographs
the live view in headless Chromium while the session streams, then the report once it is
written, and saves `docs/images/live-view.png` and `docs/images/report.png`.
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import IO

from bench.browser import Chromium, find_chromium
from bench.progress import say
from bench.sessions import free_port

OUT = Path(__file__).resolve().parents[1] / "docs" / "images"


def _watch(stream: IO[str], found: dict[str, str], streaming: threading.Event) -> None:
    for line in stream:
        if line.startswith("live view: "):
            found["url"] = line.split("live view: ", 1)[1].strip()
        elif line.startswith("sent ") and "matched" in line:
            streaming.set()


async def shoot(out: Path, seconds: int) -> None:
    """Run the session and take both pictures."""
    port = str(free_port())
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.html"
        server = subprocess.Popen(
            [sys.executable, "-m", "peers.server", "--signaling-port", port,
             "--duration", str(seconds), "--view-port", "0", "--report", str(report)],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        )  # fmt: skip
        client = subprocess.Popen(
            [sys.executable, "-m", "peers.client", "--signaling-port", port],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        found: dict[str, str] = {}
        streaming = threading.Event()
        assert server.stdout is not None
        threading.Thread(target=_watch, args=(server.stdout, found, streaming), daemon=True).start()
        try:
            await asyncio.to_thread(streaming.wait, 120)
            say(f"streaming; photographing the live view at {found['url']}")
            async with Chromium(1280, 640) as browser:
                await browser.open(found["url"], settle_s=6.0)
                (out / "live-view.png").write_bytes(await browser.screenshot())
            say("waiting for the end of the session and its report")
            await asyncio.to_thread(server.wait, seconds + 120)
            await asyncio.to_thread(client.wait, 60)
            if server.returncode != 0 or not report.exists():
                raise RuntimeError(f"the session failed (server exit {server.returncode})")
            async with Chromium(1100, 900) as browser:
                await browser.open(report.as_uri(), settle_s=1.0)
                (out / "report.png").write_bytes(await browser.screenshot(full_page=True))
        finally:
            for proc in (server, client):
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()


def main(argv: list[str] | None = None) -> int:
    """Write docs/images/live-view.png and docs/images/report.png."""
    parser = argparse.ArgumentParser(prog="python -m bench.screenshots")
    parser.add_argument("--out", type=Path, default=OUT, help="directory for the PNG files")
    parser.add_argument("--seconds", type=int, default=20, help="length of the session")
    args = parser.parse_args(argv)
    if find_chromium() is None:
        print("python -m bench.screenshots: error: chromium is not installed (make test-tools)",
              file=sys.stderr)  # fmt: skip
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    asyncio.run(shoot(args.out, args.seconds))
    for name in ("live-view.png", "report.png"):
        say(f"wrote {args.out / name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
