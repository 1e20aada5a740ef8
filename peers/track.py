"""The server's video track: frame i shows the ball at its true position for frame i."""

from __future__ import annotations

import asyncio
import fractions
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import numpy.typing as npt
from aiortc import MediaStreamTrack
from aiortc.mediastreams import MediaStreamError
from av import VideoFrame
from av.video.plane import VideoPlane

from peers import marker, render
from peers.ball import BallModel

VIDEO_CLOCK_RATE = 90_000
VIDEO_TIME_BASE = fractions.Fraction(1, VIDEO_CLOCK_RATE)


NEUTRAL_CHROMA = 128


def plane_view(plane: VideoPlane, rows: int, columns: int) -> npt.NDArray[np.uint8]:
    """A writable rows x columns view of a frame's plane (rows may be padded)."""
    flat = np.frombuffer(memoryview(plane), dtype=np.uint8)
    return flat.reshape(-1, plane.line_size)[:rows, :columns]


def yuv_frame(luma: npt.NDArray[np.uint8]) -> VideoFrame:
    """A yuv420p frame with this luma and neutral chroma (a grey picture), any size."""
    height, width = luma.shape
    frame = VideoFrame(width, height, "yuv420p")
    y_plane, u_plane, v_plane = frame.planes
    np.copyto(plane_view(y_plane, height, width), luma)
    for chroma in (u_plane, v_plane):
        np.frombuffer(memoryview(chroma), dtype=np.uint8).fill(NEUTRAL_CHROMA)
    return frame


class BallTrack(MediaStreamTrack):
    """Paces frames at `fps`; renders each (off the event loop) with its index in the marker.

    Ends (MediaStreamError, which stops aiortc's sender) after `max_frames` frames or
    `max_seconds` seconds, whichever comes first (0 means no limit), after one blank flush
    frame (marker.FLUSH_INDEX): its packets reveal a lost last packet of the last real frame,
    which the client can then ask for again (nothing else follows it).
    `on_sent(index, t)` is called as each frame leaves for the encoder, with `t` on the `clock`.
    """

    kind = "video"

    def __init__(
        self,
        model: BallModel,
        *,
        max_frames: int = 0,
        max_seconds: float = 0.0,
        on_sent: Callable[[int, float], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
        grain: bool = True,
    ) -> None:
        super().__init__()
        self.model = model
        self.max_frames = max_frames
        self.max_seconds = max_seconds
        self._on_sent = on_sent
        self._clock = clock
        self._next = 0
        self._flushed = False
        self._stop_requested = False
        self._start: float | None = None
        self._luma = np.empty((model.height, model.width), dtype=np.uint8)
        self._grain = render.Grain(model.width, model.height) if grain else None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="render")
        self.finished = asyncio.Event()

    @property
    def frames_sent(self) -> int:
        """Frames handed to the encoder so far."""
        return self._next

    def _limit_reached(self, now: float) -> bool:
        if self.max_frames and self._next >= self.max_frames:
            return True
        return bool(
            self.max_seconds and self._start is not None and now - self._start >= self.max_seconds
        )

    def _render(self, index: int) -> VideoFrame:
        model = self.model
        render.draw_luma(
            model.position(index),
            model.radius,
            frame_index=index,
            out=self._luma,
            grain=self._grain,
        )
        frame = yuv_frame(self._luma)
        frame.time_base = VIDEO_TIME_BASE
        return frame

    def _render_flush(self) -> VideoFrame:
        render.draw_luma(None, 0, frame_index=marker.FLUSH_INDEX, out=self._luma)
        frame = yuv_frame(self._luma)
        frame.pts = round(self._next * VIDEO_CLOCK_RATE / self.model.fps)
        frame.time_base = VIDEO_TIME_BASE
        return frame

    async def recv(self) -> VideoFrame:
        """The next frame, at its due time."""
        if self.readyState != "live":
            raise MediaStreamError
        now = self._clock()
        if self._start is None:
            self._start = now
        if self._stop_requested or self._limit_reached(now):
            if self._flushed:
                self.finish()
                raise MediaStreamError
            self._flushed = True
            return await self._in_render_thread(self._render_flush)
        slot = self._next
        delay = self._start + slot / self.model.fps - now
        if delay > 0:
            await asyncio.sleep(delay)
        index = self.index_for_slot(slot)
        frame = await self._in_render_thread(self._render, index)
        frame.pts = round(slot * VIDEO_CLOCK_RATE / self.model.fps)
        self._next = slot + 1
        if self._on_sent is not None:
            self._on_sent(index, self._clock())
        return frame

    async def _in_render_thread(
        self, render_fn: Callable[..., VideoFrame], *args: int
    ) -> VideoFrame:
        try:
            return await asyncio.get_running_loop().run_in_executor(
                self._executor, render_fn, *args
            )
        except RuntimeError:  # finish() shut the render thread down meanwhile
            raise MediaStreamError from None

    def request_stop(self) -> None:
        """End gracefully: the next frame is the flush frame, then the track ends."""
        self._stop_requested = True

    def index_for_slot(self, slot: int) -> int:
        """Which frame index the `slot`-th sent frame shows: the slot itself.

        Tests override this to send frames out of order and prove that coordinates are
        tied to frames by identity, not by arrival order or timestamps.
        """
        return slot

    def finish(self) -> None:
        """Stop producing frames (the sender ends) and release the render thread."""
        self.finished.set()
        self.stop()
        self._executor.shutdown(wait=False, cancel_futures=True)
