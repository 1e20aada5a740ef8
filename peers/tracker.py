"""process_a: the separate process that finds the ball in each received frame.

The client's main thread hands frames to process_a through a bounded
`multiprocessing.Queue` (`FrameTracker.submit`); when process_a falls behind, the oldest
queued frame is dropped and counted, so the queue never grows. process_a reads the frame's
identity from its marker band, locates the ball, and stores frame id, x and y in
`multiprocessing.Value`s. A one-slot handshake makes sure the main thread reads every
result exactly once without polling: process_a waits on `slot_free` before writing the
Values, then rings a doorbell pipe; the main thread's event loop watches the pipe
(`loop.add_reader`), reads the Values, and releases `slot_free`.

No process_a outlives its client, however the client dies: process_a's first act is to ask
the kernel for SIGKILL when its parent dies (Linux `PR_SET_PDEATHSIG`), then to check that its
parent is still the one that started it (the parent may have died while process_a was still
being spawned). SIGKILL also ends a process_a blocked on a half-written frame, which no check
in Python could. Flags that cross the process boundary are plain shared Values (no
`multiprocessing.Event`, whose `set()` waits for every waiter to wake, forever if the waiter
was killed). process_a is started with SIGINT and SIGTERM blocked: a Ctrl-C in the terminal
or a SIGTERM to the whole process group is for the client, which then stops process_a itself.
The client learns at once when process_a dies (`on_exit`, from the process sentinel).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import multiprocessing as mp
import os
import queue as queue_module
import signal
import sys
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
READY_POLL_S = 0.02
EXIT_REAP_TIMEOUT_S = 1.0
PR_SET_PDEATHSIG = 1
"""prctl(2) option: the signal this process gets when the thread that created it exits."""
BLOCKED_IN_PROCESS_A = {signal.SIGINT, signal.SIGTERM}


@dataclass(frozen=True)
class Detection:
    """One result of process_a: the ball centre it found in frame `frame`."""

    frame: int
    x: float
    y: float


DETECTED, NO_BALL, UNREADABLE = 0, 1, 2
"""What process_a rings for (SharedResult.kind): a detection, a frame without a ball, or an
unreadable frame whose index its neighbours told (see `UnreadableFrames`)."""
MISSES = {NO_BALL: "no_ball", UNREADABLE: "unreadable"}
MAX_PENDING_UNREADABLE = 64


class UnreadableFrames:
    """Names the frames process_a could not read, from the readable frames around them.

    Frames reach process_a in arrival order with the client's sequence number (`seq`, which
    also counts the frames the client dropped). Between two readable frames a (at seq s1)
    and b (at seq s2), when b - a == s2 - s1 no frame was lost or reordered on the way, so
    the unreadable frame at seq s is frame a + (s - s1). Otherwise they stay unnamed.
    """

    def __init__(self) -> None:
        self._last: tuple[int, int] | None = None
        self._pending: list[int] = []

    def unreadable(self, seq: int) -> None:
        """The frame at `seq` had no readable marker."""
        if len(self._pending) < MAX_PENDING_UNREADABLE:
            self._pending.append(seq)

    def readable(self, seq: int, frame: int) -> list[int]:
        """Frame `frame` arrived at `seq`: the frames the pending unreadable ones were."""
        named = []
        if self._last is not None and self._pending:
            last_seq, last_frame = self._last
            if frame - last_frame == seq - last_seq:
                named = [last_frame + (s - last_seq) for s in self._pending if s > last_seq]
        self._pending.clear()
        self._last = (seq, frame)
        return named


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
        self.results = ctx.Value("q", 0, lock=False)
        self.unreadable = ctx.Value("q", 0, lock=False)
        self.missed = ctx.Value("q", 0, lock=False)
        self.kind = ctx.Value("b", DETECTED, lock=False)
        self.ready = ctx.Value("b", 0, lock=False)
        self.stop = ctx.Value("b", 0, lock=False)


def _store(shared: SharedResult, frame: int, x: float, y: float, kind: int) -> None:
    shared.frame.value = frame
    shared.x.value = x
    shared.y.value = y
    shared.kind.value = kind


def process_frame(item: FrameItem) -> tuple[int | None, tuple[float, float] | None]:
    """Frame id and ball centre of one frame (either may be None)."""
    luma = item.luma()
    return marker.read(luma), detect.locate(luma)


def die_with_parent(parent_pid: int) -> bool:
    """Have the kernel SIGKILL this process when its parent dies; False if it already has.

    Linux only (elsewhere the parent-liveness checks in process_a's loop remain).
    """
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    return os.getppid() == parent_pid


def run_process_a(
    frames: Any,
    shared: SharedResult,
    doorbell: Connection,
    slot_free: Any,
    parent_pid: int,
) -> None:
    """process_a's main loop: frames in, Values out, until a None sentinel or stop."""
    if not die_with_parent(parent_pid):
        return  # the client died while we were being spawned
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when we stop
    shared.ready.value = 1
    unreadable = UnreadableFrames()

    def deliver(frame: int, x: float, y: float, kind: int) -> bool:
        """Hand one result to the main thread; False when told to stop meanwhile."""
        while not slot_free.acquire(timeout=POLL_S):
            if shared.stop.value or os.getppid() != parent_pid:
                return False
        _store(shared, frame, x, y, kind)
        shared.results.value += 1
        doorbell.send_bytes(b"\x01")
        return True

    while not shared.stop.value:
        try:
            item = frames.get(timeout=POLL_S)
        except queue_module.Empty:
            if os.getppid() != parent_pid:
                return  # orphaned (only reachable where PR_SET_PDEATHSIG does not exist)
            continue
        if item is None:
            return
        frame_id, centre = process_frame(item)
        if frame_id == marker.FLUSH_INDEX:
            pass
        elif frame_id is None:
            shared.unreadable.value += 1
            unreadable.unreadable(item.seq)
        else:
            for named in unreadable.readable(item.seq, frame_id):
                if not deliver(named, 0.0, 0.0, UNREADABLE):
                    return
            if centre is None:
                shared.missed.value += 1
                if not deliver(frame_id, 0.0, 0.0, NO_BALL):
                    return
            elif not deliver(frame_id, centre[0], centre[1], DETECTED):
                return
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
        self._process: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._on_result: Callable[[Detection], None] | None = None
        self._on_miss: Callable[[int, str], None] | None = None
        self._on_drop: Callable[[FrameItem], None] | None = None
        self._on_exit: Callable[[str], None] | None = None
        self._watching_exit = False
        self.submitted = 0
        self.dropped = 0
        self.delivered = 0

    @property
    def pid(self) -> int | None:
        """process_a's pid once started."""
        return None if self._process is None else int(self._process.pid)

    def start(self) -> None:
        """Spawn process_a (from the thread that will outlive it: the kernel ties its life to it).

        SIGINT and SIGTERM are blocked while spawning, so process_a inherits them blocked
        (and keeps them so); signals meanwhile sent to the client arrive right after.
        """
        self._process = self._ctx.Process(
            target=run_process_a,
            name="process_a",
            args=(self._frames, self.shared, self._doorbell_w, self._slot_free, os.getpid()),
            daemon=True,
        )
        previous = signal.pthread_sigmask(signal.SIG_BLOCK, BLOCKED_IN_PROCESS_A)
        try:
            self._process.start()
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, previous)

    def alive(self) -> bool:
        """True while process_a runs."""
        return self._process is not None and bool(self._process.is_alive())

    def describe_exit(self) -> str:
        """How process_a ended, for messages: 'killed by SIGKILL', 'exit code 1', ..."""
        if self._process is None:
            return "never started"
        self._process.join(0)
        code = self._process.exitcode
        if code is None:
            return "still running"
        if code < 0:
            with contextlib.suppress(ValueError):
                return f"killed by {signal.Signals(-code).name}"
            return f"killed by signal {-code}"
        return f"exit code {code}"

    async def wait_ready(self, timeout: float) -> bool:
        """Wait until process_a runs its loop; False on timeout or if it died meanwhile."""
        deadline = time.monotonic() + timeout
        while not self.shared.ready.value:
            if time.monotonic() >= deadline or not self.alive():
                return False
            await asyncio.sleep(READY_POLL_S)
        return True

    def attach(
        self,
        loop: asyncio.AbstractEventLoop,
        on_result: Callable[[Detection], None],
        on_exit: Callable[[str], None] | None = None,
        on_miss: Callable[[int, str], None] | None = None,
        on_drop: Callable[[FrameItem], None] | None = None,
    ) -> None:
        """Deliver each result to `on_result` on `loop` (the client's main thread).

        `on_exit(description)` is called on `loop` as soon as process_a ends unasked;
        `on_miss(frame, "no_ball" | "unreadable")` for a frame without a detection whose index
        is known; `on_drop(item)` for each queued frame dropped because process_a was behind.
        """
        self._loop, self._on_result, self._on_exit = loop, on_result, on_exit
        self._on_miss, self._on_drop = on_miss, on_drop
        loop.add_reader(self._doorbell_r.fileno(), self._ring)
        if on_exit is not None and self._process is not None:
            loop.add_reader(self._process.sentinel, self._exited)
            self._watching_exit = True

    def _exited(self) -> None:
        self._stop_watching_exit()
        if self._process is not None:
            # The sentinel closes a moment before the kernel has the exit status to reap.
            self._process.join(EXIT_REAP_TIMEOUT_S)
        if self._on_exit is not None:
            self._on_exit(self.describe_exit())

    def _stop_watching_exit(self) -> None:
        if self._watching_exit and self._loop is not None and self._process is not None:
            with contextlib.suppress(ValueError, OSError):
                self._loop.remove_reader(self._process.sentinel)
        self._watching_exit = False

    def _ring(self) -> None:
        try:
            self._doorbell_r.recv_bytes()
        except (EOFError, OSError):
            if self._loop is not None:
                self._loop.remove_reader(self._doorbell_r.fileno())
            return
        shared = self.shared
        kind = int(shared.kind.value)
        result = Detection(int(shared.frame.value), float(shared.x.value), float(shared.y.value))
        self._slot_free.release()
        self.delivered += 1
        if kind == DETECTED:
            if self._on_result is not None:
                self._on_result(result)
        elif kind in MISSES and self._on_miss is not None:
            self._on_miss(result.frame, MISSES[kind])

    def submit(self, item: FrameItem) -> None:
        """Queue a frame without ever blocking; when full, drop the oldest queued frame."""
        self.submitted += 1
        try:
            self._frames.put_nowait(item)
            return
        except queue_module.Full:
            pass
        try:
            oldest = self._frames.get_nowait()
            self.dropped += 1
            if self._on_drop is not None:
                self._on_drop(oldest)
        except queue_module.Empty:
            pass
        try:
            self._frames.put_nowait(item)
        except queue_module.Full:
            self.dropped += 1  # process_a raced us to the slot; this frame is the casualty
            if self._on_drop is not None:
                self._on_drop(item)

    def idle(self) -> bool:
        """True when every submitted frame has been dropped or processed, and every result
        process_a rang for has been delivered (a ring may still wait in the event loop)."""
        shared = self.shared
        handled = int(shared.processed.value) + self.dropped >= self.submitted
        return handled and self.delivered >= int(shared.results.value)

    async def drain(self, timeout: float) -> bool:
        """Wait until process_a has handled every queued frame (True) or `timeout` passes."""
        deadline = time.monotonic() + timeout
        while not self.idle():
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(0.01)
        return True

    def detach(self) -> None:
        """Stop delivering results and exit notices (call on the loop's thread)."""
        self._stop_watching_exit()
        if self._loop is not None:
            with contextlib.suppress(ValueError, OSError):
                self._loop.remove_reader(self._doorbell_r.fileno())

    def close(self) -> None:
        """Stop process_a (stop flag and sentinel, then SIGKILL if it will not go); release
        pipes. Called from another thread than the loop's, call `detach()` first."""
        with contextlib.suppress(RuntimeError):
            if asyncio.get_running_loop() is self._loop:
                self.detach()
        self.shared.stop.value = 1
        with contextlib.suppress(queue_module.Full, ValueError, OSError):
            self._frames.put_nowait(None)
        if self._process is not None:
            self._process.join(JOIN_TIMEOUT_S)
            if self._process.is_alive():
                self._process.kill()  # SIGTERM is blocked in process_a
                self._process.join()
        self._frames.cancel_join_thread()
        self._frames.close()
        for conn in (self._doorbell_r, self._doorbell_w):
            conn.close()
