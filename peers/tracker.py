"""process_a: the separate process that finds the ball in each received frame.

The client's main thread hands frames to process_a through a bounded
`multiprocessing.Queue` (`FrameTracker.submit`); when process_a falls behind, the oldest
queued frame is dropped and counted, so the queue never grows. process_a reads the frame's
identity from its marker band, locates the ball, and stores frame id, x and y in
`multiprocessing.Value`s. A one-slot handshake makes sure the main thread reads every
result exactly once without polling: process_a waits on `slot_free` before writing the
Values, then rings a doorbell pipe; the main thread's event loop watches the pipe
(`loop.add_reader`), reads the Values, and releases `slot_free`.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing as mp
import os
import queue as queue_module
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

import numpy as np

from peers import detect, marker

START_METHOD = "spawn"
"""Explicit: aiortc runs threads, and Python 3.14 changed the Linux default anyway."""
POLL_S = 0.25
JOIN_TIMEOUT_S = 3.0


@dataclass(frozen=True)
class Detection:
    """One result of process_a: the ball centre it found in frame `frame`."""

    frame: int
    x: float
    y: float


@dataclass(frozen=True)
class FrameItem:
    """A frame's luma plane as sent through the queue (row stride may exceed width)."""

    seq: int
    width: int
    height: int
    stride: int
    data: bytes

    def luma(self) -> np.ndarray[Any, np.dtype[np.uint8]]:
        """The plane as an H x W uint8 array (a view, no copy)."""
        plane = np.frombuffer(self.data, dtype=np.uint8)
        return plane[: self.height * self.stride].reshape(self.height, self.stride)[:, : self.width]


class SharedResult:
    """The Values process_a writes and the main thread reads, plus process_a's counters."""

    def __init__(self, ctx: Any) -> None:
        self.frame = ctx.Value("q", -1, lock=False)
        self.x = ctx.Value("d", 0.0, lock=False)
        self.y = ctx.Value("d", 0.0, lock=False)
        self.processed = ctx.Value("q", 0, lock=False)
        self.unreadable = ctx.Value("q", 0, lock=False)
        self.missed = ctx.Value("q", 0, lock=False)


def _store(shared: SharedResult, frame: int, x: float, y: float) -> None:
    shared.frame.value = frame
    shared.x.value = x
    shared.y.value = y


def process_frame(item: FrameItem) -> tuple[int | None, tuple[float, float] | None]:
    """Frame id and ball centre of one frame (either may be None)."""
    luma = item.luma()
    return marker.read(luma), detect.locate(luma)


def run_process_a(
    frames: Any,
    shared: SharedResult,
    doorbell: Connection,
    slot_free: Any,
    stop: Any,
    ready: Any,
    parent_pid: int,
) -> None:
    """process_a's main loop: frames in, Values out, until a None sentinel or stop."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when we stop
    ready.set()
    while not stop.is_set():
        try:
            item = frames.get(timeout=POLL_S)
        except queue_module.Empty:
            if os.getppid() != parent_pid:
                return  # orphaned: the client died without telling us
            continue
        if item is None:
            return
        frame_id, centre = process_frame(item)
        if frame_id == marker.FLUSH_INDEX:
            pass
        elif frame_id is None:
            shared.unreadable.value += 1
        elif centre is None:
            shared.missed.value += 1
        else:
            while not slot_free.acquire(timeout=POLL_S):
                if stop.is_set() or os.getppid() != parent_pid:
                    return
            _store(shared, frame_id, centre[0], centre[1])
            doorbell.send_bytes(b"\x01")
        shared.processed.value += 1


class FrameTracker:
    """The client's handle on process_a: start it, feed it, read its results, stop it."""

    def __init__(self, queue_size: int = 4) -> None:
        if queue_size < 1:
            raise ValueError("queue_size must be >= 1")
        self._ctx: Any = mp.get_context(START_METHOD)
        self._frames = self._ctx.Queue(maxsize=queue_size)
        self.shared = SharedResult(self._ctx)
        self._doorbell_r, self._doorbell_w = self._ctx.Pipe(duplex=False)
        self._slot_free = self._ctx.Semaphore(1)
        self._stop = self._ctx.Event()
        self._ready = self._ctx.Event()
        self._process: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._on_result: Callable[[Detection], None] | None = None
        self.submitted = 0
        self.dropped = 0
        self.delivered = 0

    @property
    def pid(self) -> int | None:
        """process_a's pid once started."""
        return None if self._process is None else int(self._process.pid)

    def start(self) -> None:
        """Spawn process_a."""
        self._process = self._ctx.Process(
            target=run_process_a,
            name="process_a",
            args=(
                self._frames,
                self.shared,
                self._doorbell_w,
                self._slot_free,
                self._stop,
                self._ready,
                os.getpid(),
            ),
            daemon=True,
        )
        self._process.start()

    async def wait_ready(self, timeout: float) -> bool:
        """Wait (off the event loop) until process_a runs its loop; False on timeout."""
        return bool(await asyncio.to_thread(self._ready.wait, timeout))

    def attach(
        self, loop: asyncio.AbstractEventLoop, on_result: Callable[[Detection], None]
    ) -> None:
        """Deliver each result to `on_result` on `loop` (the client's main thread)."""
        self._loop, self._on_result = loop, on_result
        loop.add_reader(self._doorbell_r.fileno(), self._ring)

    def _ring(self) -> None:
        try:
            self._doorbell_r.recv_bytes()
        except (EOFError, OSError):
            if self._loop is not None:
                self._loop.remove_reader(self._doorbell_r.fileno())
            return
        shared = self.shared
        result = Detection(int(shared.frame.value), float(shared.x.value), float(shared.y.value))
        self._slot_free.release()
        self.delivered += 1
        if self._on_result is not None:
            self._on_result(result)

    def submit(self, item: FrameItem) -> None:
        """Queue a frame without ever blocking; when full, drop the oldest queued frame."""
        self.submitted += 1
        try:
            self._frames.put_nowait(item)
            return
        except queue_module.Full:
            pass
        try:
            self._frames.get_nowait()
            self.dropped += 1
        except queue_module.Empty:
            pass
        try:
            self._frames.put_nowait(item)
        except queue_module.Full:
            self.dropped += 1  # process_a raced us to the slot; this frame is the casualty

    def idle(self) -> bool:
        """True when every submitted frame has been dropped or processed and delivered."""
        processed = int(self.shared.processed.value)
        return processed + self.dropped >= self.submitted

    async def drain(self, timeout: float) -> bool:
        """Wait until process_a has handled every queued frame (True) or `timeout` passes."""
        deadline = time.monotonic() + timeout
        while not self.idle():
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(0.01)
        return True

    def close(self) -> None:
        """Stop process_a (sentinel, then terminate if it will not go) and release pipes."""
        if self._loop is not None:
            with contextlib.suppress(ValueError, OSError):
                self._loop.remove_reader(self._doorbell_r.fileno())
        self._stop.set()
        with contextlib.suppress(queue_module.Full, ValueError, OSError):
            self._frames.put_nowait(None)
        if self._process is not None:
            self._process.join(JOIN_TIMEOUT_S)
            if self._process.is_alive():
                self._process.terminate()
                self._process.join(JOIN_TIMEOUT_S)
            if self._process.is_alive():
                self._process.kill()
                self._process.join()
        self._frames.cancel_join_thread()
        self._frames.close()
        for conn in (self._doorbell_r, self._doorbell_w):
            conn.close()
