"""The live view in a real headless Chromium during a real session."""

from __future__ import annotations

import asyncio
import json
import socket
import time
import urllib.request
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from loopback import finish, free_port, peer, start_session, wait_for_line
from machine_tools import require

from bench.browser import Chromium, find_chromium


def stats(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(url + "stats.json", timeout=10) as response:
        return dict(json.loads(response.read()))


def wait_stats(url: str, ready: Any, timeout: float = 60.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        numbers = stats(url)
        if ready(numbers):
            return numbers
        time.sleep(0.25)
    raise AssertionError(f"the view never got there: {numbers}")


def near(image: np.ndarray, bgr: tuple[int, int, int], tolerance: int) -> int:
    distance = np.abs(image.astype(np.int16) - np.array(bgr, dtype=np.int16)).max(axis=2)
    return int((distance <= tolerance).sum())


def test_the_page_shows_the_ball_with_truth_and_detection_and_live_numbers(tmp_path: Path) -> None:
    require(None if find_chromium() else "chromium is not installed (make test-tools)")
    seconds = 15
    session = start_session(tmp_path, ["--duration", str(seconds), "--view-port", "0"])
    try:
        line = wait_for_line(session.server.stdout, "live view: ")[-1]  # type: ignore[arg-type]
        url = line.split("live view: ", 1)[1].strip()
        assert url.startswith("http://127.0.0.1:")
        before = wait_stats(url, lambda n: n["phase"] == "streaming" and n["frames_matched"] > 30)
        streaming_since = time.monotonic() - before["frames_sent"] / 30
        assert before["video_frames_encoded"] == 0  # nobody watches: no JPEG work

        async def look() -> tuple[bytes, dict[str, float], list[dict[str, Any]], Any]:
            async with Chromium(1280, 800) as browser:
                await browser.open(url, settle_s=3.0)
                box = await browser.evaluate(
                    "(() => { const r = document.getElementById('video').getBoundingClientRect();"
                    " return {x: r.x, y: r.y, w: r.width, h: r.height}; })()"
                )
                read = (
                    "({sent: +document.getElementById('frames_sent').textContent,"
                    " updates: +document.getElementById('updates').textContent,"
                    " fps: document.getElementById('fps_now').textContent,"
                    " error: document.getElementById('error_px_now').textContent})"
                )
                first = await browser.evaluate(read)
                shot = await browser.screenshot()
                await asyncio.sleep(2.0)
                second = await browser.evaluate(read)
                watched = stats(url)
                # The page stays open: a viewer must not hold the server up at the end.
                await asyncio.to_thread(session.server.wait, 120)
                return shot, box, [first, second], watched

        shot, box, (first, second), watched = asyncio.run(look())
        ended_after = time.monotonic() - streaming_since
    finally:
        server, client = finish(session.server, 90), finish(session.client, 90)
    assert server.code == client.code == 0, server.stderr + client.stderr
    assert ended_after < seconds + 20, f"the server took {ended_after:.0f} s with a viewer"

    image = cv2.imdecode(np.frombuffer(shot, np.uint8), cv2.IMREAD_COLOR)
    x, y, w, h = (round(box[k]) for k in ("x", "y", "w", "h"))
    assert w >= 600 and h >= 450, box  # the video is drawn at its size, not a broken image
    video = image[y : y + h, x : x + w]
    assert near(video, (255, 255, 255), 40) > 300, "no ball in the video"
    assert near(video, (0, 200, 0), 70) > 40, "no truth circle"
    assert near(video, (0, 0, 255), 70) > 40, "no detection cross"
    assert second["sent"] > first["sent"] + 20  # the numbers move
    assert second["updates"] >= first["updates"] + 4  # at least twice a second
    assert first["fps"] != "n/a" and float(first["error"]) < 0.5
    assert watched["video_frames_encoded"] > 10 and watched["video_viewers"] == 1


def test_a_taken_view_port_is_one_line_and_exit_2(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        server = peer("server", "--signaling-port", str(free_port()), "--view-port", str(port))
        done = finish(server, 60)
    assert done.code == 2
    assert (
        done.stderr.strip()
        .splitlines()[-1]
        .startswith(
            f"python -m peers.server: error: --view-port {port}: cannot listen on 127.0.0.1"
        )
    )
