"""The client's `--display` and `--record`: received frames with the client's own detection.

A detection arrives a few milliseconds after its frame (process_a works on a copy of the
luma plane), so each received frame is kept, by the identity in its marker, until its
detection comes back; then it is converted to BGR, the cross and a caption drawn, and handed
to the window and/or the recorder. At most KEEP_FRAMES frames wait (references to the
decoded frames, no copies); a frame whose detection never comes (dropped, no ball,
unreadable) is shown without a cross once KEEP_FRAMES newer frames arrived. Nothing of this
runs without `--display` or `--record`.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from typing import Any

from peers import marker, overlay
from peers.ball import Position
from peers.display import Window
from peers.recorder import Recorder
from peers.samples import luma_of
from peers.tracker import Detection

KEEP_FRAMES = 8
FPS_WINDOW_S = 1.0


def frame_identity(frame: Any) -> int | None:
    """The marker's frame index of a decoded frame (None when unreadable)."""
    return marker.read(luma_of(frame))


class ReceivedFrames:
    """Received frames waiting for their detection, then drawn for the window/recorder."""

    def __init__(self, window: Window | None, recorder: Recorder | None) -> None:
        self.window = window
        self.recorder = recorder
        self._waiting: OrderedDict[int, tuple[Any, float]] = OrderedDict()
        self._started: float | None = None
        self._shown_at: list[float] = []

    def on_frame(self, frame: Any, now: float) -> None:
        """A decoded frame arrived (call from the loop, for every frame)."""
        if self._started is None:
            self._started = now
        identity = frame_identity(frame)
        if identity is None or identity == marker.FLUSH_INDEX:
            return
        self._waiting[identity] = (frame, now)
        while len(self._waiting) > KEEP_FRAMES:
            old_identity, (old, at) = self._waiting.popitem(last=False)
            self._emit(old_identity, old, at, None)

    def on_detection(self, detection: Detection) -> None:
        """process_a found the ball in frame `detection.frame`."""
        waiting = self._waiting.pop(detection.frame, None)
        if waiting is not None:
            frame, at = waiting
            self._emit(detection.frame, frame, at, Position(detection.x, detection.y))

    def _fps(self, now: float) -> float | None:
        self._shown_at.append(now)
        while now - self._shown_at[0] > FPS_WINDOW_S:
            self._shown_at.pop(0)
        span = self._shown_at[-1] - self._shown_at[0]
        return (len(self._shown_at) - 1) / span if span > 0 else None

    def _emit(self, identity: int, frame: Any, at: float, detected: Position | None) -> None:
        bgr = frame.to_ndarray(format="bgr24")
        fps = self._fps(time.monotonic())
        lines = [
            f"frame {identity}  " + ("no detection" if detected is None else
                                      f"ball at ({detected.x:.2f}, {detected.y:.2f})"),
            "n/a fps" if fps is None else f"{fps:.1f} fps",
        ]  # fmt: skip
        radius = max(6.0, min(bgr.shape[:2]) / 40)
        overlay.annotate(bgr, radius=radius, detected=detected, lines=lines)
        if self.window is not None:
            self.window.show(bgr)
        if self.recorder is not None:
            self.recorder.write(bgr, at - (self._started or at))
