"""`--record PATH`: the frames a peer shows, with their overlays, written to a video file.

PyAV (already a dependency through aiortc) encodes in a thread: H.264 (libx264, yuv420p) in
`.mp4`/`.mkv`, VP8 in `.webm`, or an animated `.gif` (at most 15 frames/s, 3-3-2 colour).
The loop only hands over a frame (`write`, never blocking): when the encoder falls behind,
frames beyond QUEUE_FRAMES are dropped and counted. Timestamps are the frames' own (ms), so
a recording plays at the session's pace even where frames are missing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import threading
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

FORMATS = {
    ".mp4": ("libx264", "yuv420p"),
    ".mkv": ("libx264", "yuv420p"),
    ".webm": ("libvpx", "yuv420p"),
    ".gif": ("gif", "rgb8"),
}
"""Suffix → (encoder, pixel format)."""
log = logging.getLogger("rebound.record")

GIF_MAX_FPS = 15.0
QUEUE_FRAMES = 64
TIME_BASE = Fraction(1, 1000)


class RecordError(Exception):
    """The recording failed (one line for the user)."""


def check_path(path: Path) -> str | None:
    """Why `path` cannot be a recording (its suffix), or None."""
    if path.suffix.lower() not in FORMATS:
        return f"--record {path}: use one of {', '.join(FORMATS)}"
    return None


class Recorder:
    """Encodes BGR frames handed over from the event loop into `path`, in a thread."""

    def __init__(self, path: Path, fps_hint: float = 30.0) -> None:
        problem = check_path(path)
        if problem:
            raise RecordError(problem)
        self.path = path
        self.codec, self.pixel_format = FORMATS[path.suffix.lower()]
        self.fps_hint = fps_hint
        self.written = 0
        self.dropped = 0
        self._queue: queue.Queue[tuple[npt.NDArray[np.uint8], float] | None] = queue.Queue(
            QUEUE_FRAMES
        )
        self._problem: str | None = None
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="recorder", daemon=True)
        self._thread.start()

    def write(self, frame: npt.NDArray[np.uint8], t_s: float) -> None:
        """Queue a BGR frame shown at `t_s` seconds (never blocks; drops when behind). The
        recorder owns `frame` from now on."""
        if self._closed:
            return
        try:
            self._queue.put_nowait((frame, t_s))
        except queue.Full:
            self.dropped += 1

    def _run(self) -> None:
        import av

        container: Any = None
        stream: Any = None
        last_pts = -1
        min_gap_ms = 0.9 * 1000.0 / GIF_MAX_FPS if self.codec == "gif" else 0.0
        try:
            container = av.open(str(self.path), mode="w")
            while (item := self._queue.get()) is not None:
                frame, t_s = item
                pts = round(t_s * 1000)
                if pts <= last_pts or (last_pts >= 0 and pts - last_pts < min_gap_ms):
                    continue
                height, width = frame.shape[:2]
                even = frame[: height - height % 2, : width - width % 2]
                if stream is None:
                    stream = container.add_stream(self.codec, rate=round(self.fps_hint))
                    stream.width, stream.height = even.shape[1], even.shape[0]
                    stream.pix_fmt = self.pixel_format
                    stream.time_base = TIME_BASE
                    if self.codec == "libx264":
                        stream.options = {"preset": "veryfast", "crf": "23"}
                video = av.VideoFrame.from_ndarray(np.ascontiguousarray(even), format="bgr24")
                video = video.reformat(format=self.pixel_format)
                video.pts, video.time_base = pts, TIME_BASE
                for packet in stream.encode(video):
                    container.mux(packet)
                last_pts = pts
                self.written += 1
            if stream is not None:
                for packet in stream.encode(None):
                    container.mux(packet)
        except Exception as exc:  # PyAV raises its own errors for files and codecs
            self._problem = f"--record {self.path}: {exc}"
            with contextlib.suppress(queue.Empty):
                while True:
                    self._queue.get_nowait()
        finally:
            if container is not None:
                with contextlib.suppress(Exception):
                    container.close()

    async def close(self) -> None:
        """Finish the file (every queued frame is encoded); RecordError if anything failed."""
        if self._closed:
            return
        self._closed = True
        await asyncio.to_thread(self._finish)
        if self._problem is not None:
            raise RecordError(self._problem)
        if self.written == 0:
            log.warning("--record %s: no frame was shown, nothing recorded", self.path)

    def _finish(self) -> None:
        while self._thread.is_alive():
            try:
                self._queue.put(None, timeout=0.2)
                break
            except queue.Full:  # the encoder is still busy (or failed and stopped reading)
                continue
        self._thread.join()
        if self.written == 0 and self._problem is None:
            with contextlib.suppress(OSError):
                self.path.unlink()
