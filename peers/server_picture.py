"""The server's `--display` and `--record`: its frames with the truth (green circle), the
client's detection (red cross) and the running fps and error.

One task, while the session streams, takes the newest frame a coordinate came back for at
most `min(fps, 30)` times a second, draws it in a thread (peers.overlay.SentFrames), then
shows it in the window and/or hands it to the recorder. Nothing of this runs without
`--display` or `--record`.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable

import numpy as np
import numpy.typing as npt

from peers import overlay
from peers.ball import BallModel
from peers.display import Window
from peers.live_numbers import RunningNumbers, Snapshot
from peers.matching import Match
from peers.recorder import Recorder

MAX_FPS = 30


class ServerPicture:
    """Draws the newest matched frame for the window and the recorder."""

    def __init__(
        self,
        model: BallModel,
        snapshot: Callable[[], Snapshot],
        window: Window | None,
        recorder: Recorder | None,
    ) -> None:
        self.window = window
        self.recorder = recorder
        self._snapshot = snapshot
        self._frames = overlay.SentFrames(model)
        self._numbers = RunningNumbers()
        self._interval = 1.0 / min(model.fps, MAX_FPS)
        self._fps = model.fps
        self._task: asyncio.Task[None] | None = None
        self.drawn = 0

    def start(self) -> None:
        """Begin drawing (call once the session streams)."""
        if self._task is None:
            self._task = asyncio.ensure_future(self._run())

    def _draw(self, match: Match, lines: list[str]) -> npt.NDArray[np.uint8]:
        return self._frames.draw(match.frame, match.truth, match.detected, lines).copy()

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        shown: int | None = None
        while True:
            started = loop.time()
            snap = self._snapshot()
            numbers = self._numbers.update(snap, time.monotonic())
            match = snap.last_match
            if match is not None and match.frame != shown:
                lines = overlay.caption(
                    match.frame, match.error_px, numbers["fps_now"], numbers["latency_ms_now"]
                )
                frame = await asyncio.to_thread(self._draw, match, lines)
                shown = match.frame
                self.drawn += 1
                if self.window is not None:
                    self.window.show(frame)
                if self.recorder is not None:
                    self.recorder.write(frame, match.frame / self._fps)
            await asyncio.sleep(max(0.0, self._interval - (loop.time() - started)))

    async def stop(self) -> None:
        """Stop drawing (the recorder is closed by its owner)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
