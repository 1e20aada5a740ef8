"""The server's live view (`--view-port N`): a page with the video, the truth and the client's
detection drawn over it, and the running numbers.

aiohttp serves, on 127.0.0.1:N (another address only with `--view-host`):
- `/`: the page (no external resource: inline CSS and a few lines of script);
- `/video.mjpg`: MJPEG (`multipart/x-mixed-replace`) of the last frame a coordinate came back
  for, as the server sent it, with its truth (green circle) and the detection (red cross);
- `/events`: Server-Sent Events, the numbers below as JSON every 0.25 s;
- `/stats.json`: the same numbers once.

Nothing runs per frame for the view: the server's state is sampled 4 times a second by one
task, and video frames are rendered and JPEG-encoded (in a thread, at most `MAX_VIDEO_FPS`)
only while a video viewer is connected. At most MAX_VIEWERS connections are served at once.
Through `kubectl port-forward` the page works with the default 127.0.0.1 binding (the
forwarded connection arrives on the pod's loopback).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt
from aiohttp import web

from peers import overlay
from peers.ball import BallModel
from peers.live_numbers import RunningNumbers, Snapshot
from peers.matching import Match

log = logging.getLogger("rebound.view")

SAMPLE_INTERVAL_S = 0.25
MAX_VIDEO_FPS = 30
MAX_VIEWERS = 8
JPEG_QUALITY = 80
BOUNDARY = "reboundframe"


def jpeg(frame: npt.NDArray[np.uint8]) -> bytes:
    """`frame` as JPEG bytes."""
    ok, data = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    if not ok:
        raise RuntimeError("JPEG encoding failed")
    return data.tobytes()


class ViewError(Exception):
    """The view cannot start (the message is one line: e.g. the port is taken)."""


class LiveView:
    """The HTTP side of the live view for one session."""

    def __init__(
        self,
        model: BallModel,
        snapshot: Callable[[], Snapshot],
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        fps: int = 30,
    ) -> None:
        self.host, self.port = host, port
        self._snapshot = snapshot
        self._frames = overlay.SentFrames(model)
        self._numbers = RunningNumbers()
        self._video_interval = 1.0 / min(fps, MAX_VIDEO_FPS)
        self._runner: web.AppRunner | None = None
        self._connections = 0
        self._video_viewers = 0
        self._numbers_changed = asyncio.Condition()
        self._frame_changed = asyncio.Condition()
        self.latest: dict[str, Any] = {}
        self._jpeg: bytes | None = None
        self._jpeg_frame: int | None = None
        self._sampler: asyncio.Task[None] | None = None
        self._video: asyncio.Task[None] | None = None
        self.jpegs_encoded = 0
        self._closing = False

    @property
    def url(self) -> str:
        """Where the page is served."""
        host = "127.0.0.1" if self.host in ("0.0.0.0", "") else self.host
        return f"http://{host}:{self.port}/"

    async def start(self) -> None:
        """Listen; ViewError (one line) when the address cannot be used."""
        app = web.Application()
        app.router.add_get("/", self._page)
        app.router.add_get("/video.mjpg", self._video_stream)
        app.router.add_get("/events", self._events)
        app.router.add_get("/stats.json", self._stats)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(
            self._runner, self.host, self.port, reuse_address=True, shutdown_timeout=1.0
        )
        try:
            await site.start()
        except OSError as exc:
            await self._runner.cleanup()
            self._runner = None
            raise ViewError(
                f"--view-port {self.port}: cannot listen on {self.host}: {exc.strerror or exc}"
            ) from None
        if self.port == 0:
            self.port = int(self._runner.addresses[0][1])
        self._sampler = asyncio.ensure_future(self._sample())

    async def stop(self) -> None:
        """End every stream, close every connection and stop listening."""
        self._closing = True
        for condition in (self._numbers_changed, self._frame_changed):
            async with condition:
                condition.notify_all()
        for task in (self._sampler, self._video):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # ---- producers ----------------------------------------------------------------------

    async def _sample(self) -> None:
        while True:
            numbers = self._numbers.update(self._snapshot(), time.monotonic())
            numbers["video_viewers"] = self._video_viewers
            numbers["video_frames_encoded"] = self.jpegs_encoded
            self.latest = numbers
            async with self._numbers_changed:
                self._numbers_changed.notify_all()
            await asyncio.sleep(SAMPLE_INTERVAL_S)

    def _render(self, match: Match) -> bytes:
        n = self.latest
        lines = overlay.caption(
            match.frame, match.error_px, n.get("fps_now"), n.get("latency_ms_now")
        )
        return jpeg(self._frames.draw(match.frame, match.truth, match.detected, lines))

    async def _produce_video(self) -> None:
        """Render the newest matched frame while anyone watches the video."""
        loop = asyncio.get_running_loop()
        while self._video_viewers > 0:
            started = loop.time()
            match = self._snapshot().last_match
            if match is not None and match.frame != self._jpeg_frame:
                self._jpeg = await asyncio.to_thread(self._render, match)
                self._jpeg_frame = match.frame
                self.jpegs_encoded += 1
                async with self._frame_changed:
                    self._frame_changed.notify_all()
            await asyncio.sleep(max(0.0, self._video_interval - (loop.time() - started)))

    # ---- handlers -----------------------------------------------------------------------

    def _admit(self) -> None:
        if self._connections >= MAX_VIEWERS:
            raise web.HTTPServiceUnavailable(text=f"at most {MAX_VIEWERS} viewers\n")
        self._connections += 1

    async def _page(self, request: web.Request) -> web.Response:
        return web.Response(text=PAGE, content_type="text/html", charset="utf-8")

    async def _stats(self, request: web.Request) -> web.Response:
        return web.json_response(self.latest, dumps=lambda o: json.dumps(o, allow_nan=False))

    async def _events(self, request: web.Request) -> web.StreamResponse:
        self._admit()
        response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
        )
        try:
            await response.prepare(request)
            while not self._closing:
                data = json.dumps(self.latest, allow_nan=False)
                await response.write(f"data: {data}\n\n".encode())
                async with self._numbers_changed:
                    await self._numbers_changed.wait()
        except ConnectionError:  # the viewer went away
            pass
        finally:
            self._connections -= 1
        return response

    async def _video_stream(self, request: web.Request) -> web.StreamResponse:
        self._admit()
        self._video_viewers += 1
        if self._video is None or self._video.done():
            self._video = asyncio.ensure_future(self._produce_video())
        response = web.StreamResponse(
            headers={
                "Content-Type": f"multipart/x-mixed-replace; boundary={BOUNDARY}",
                "Cache-Control": "no-cache",
            }
        )
        try:
            await response.prepare(request)
            sent_frame: int | None = None
            while not self._closing:
                if self._jpeg is not None and self._jpeg_frame != sent_frame:
                    jpeg, sent_frame = self._jpeg, self._jpeg_frame
                    head = (
                        f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\n"
                        f"Content-Length: {len(jpeg)}\r\n\r\n"
                    )
                    await response.write(head.encode() + jpeg + b"\r\n")
                async with self._frame_changed:
                    await self._frame_changed.wait()
        except ConnectionError:  # the viewer went away
            pass
        finally:
            self._video_viewers -= 1
            self._connections -= 1
        return response


PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Rebound live view</title>
<style>
body { font-family: system-ui, sans-serif; background: #111; color: #eee; margin: 16px; }
main { display: flex; gap: 24px; align-items: flex-start; flex-wrap: wrap; }
img { max-width: min(100%, 960px); border: 1px solid #444; background: #000; }
table { border-collapse: collapse; font-size: 18px; min-width: 280px; }
th { text-align: left; color: #aaa; font-weight: normal; padding: 4px 16px 4px 0; }
td { text-align: right; font-variant-numeric: tabular-nums; padding: 4px 0; }
.key { font-size: 14px; color: #aaa; margin-top: 12px; }
.truth { color: #00c800; } .detection { color: #ff3030; }
</style></head>
<body>
<h1>Rebound live view</h1>
<main>
<img id="video" src="/video.mjpg" alt="live video">
<div>
<table>
<tr><th>phase</th><td id="phase">connecting</td></tr>
<tr><th>fps (last second)</th><td id="fps_now">n/a</td></tr>
<tr><th>error now (px)</th><td id="error_px_now">n/a</td></tr>
<tr><th>error mean (px)</th><td id="error_px_mean">n/a</td></tr>
<tr><th>error p95 (px)</th><td id="error_px_p95">n/a</td></tr>
<tr><th>latency (ms)</th><td id="latency_ms_now">n/a</td></tr>
<tr><th>frames sent</th><td id="frames_sent">0</td></tr>
<tr><th>frames matched</th><td id="frames_matched">0</td></tr>
<tr><th>dropped by the client</th><td id="frames_dropped_by_client">n/a</td></tr>
<tr><th>updates</th><td id="updates">0</td></tr>
</table>
<p class="key"><span class="truth">&#9711; truth</span> &nbsp;
<span class="detection">&#10005; the client's detection</span><br>
the last frame a coordinate came back for, as the server sent it</p>
</div>
</main>
<script>
let updates = 0;
const events = new EventSource("/events");
events.onmessage = (message) => {
  const numbers = JSON.parse(message.data);
  for (const [key, value] of Object.entries(numbers)) {
    const cell = document.getElementById(key);
    if (cell) cell.textContent = value === null ? "n/a" : value;
  }
  document.getElementById("updates").textContent = ++updates;
};
events.onerror = () => { document.getElementById("phase").textContent = "disconnected"; };
</script>
</body></html>
"""
