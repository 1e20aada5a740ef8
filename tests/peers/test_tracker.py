"""process_a for real: a spawned process, a multiprocessing.Queue and Values."""

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import psutil
import pytest

from peers import marker
from peers.ball import BallModel
from peers.render import draw
from peers.tracker import Detection, FrameItem, FrameTracker, UnreadableFrames, process_frame

MODEL = BallModel(320, 240, 12, 400, 30, seed=11)


def item(index: int, seq: int | None = None, *, stamp: bool = True) -> FrameItem:
    p = MODEL.position(index)
    bgr = draw(p, MODEL.radius, 320, 240, frame_index=index if stamp else None)
    luma = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
    return FrameItem(index if seq is None else seq, 320, 240, 320, luma.tobytes())


def test_frame_item_honours_row_stride() -> None:
    plain = item(3)
    padded = bytearray()
    for row in range(240):
        padded += plain.data[row * 320 : (row + 1) * 320] + b"\x00" * 64
    fid, centre = process_frame(FrameItem(0, 320, 240, 384, bytes(padded)))
    assert fid == 3
    assert centre is not None


async def run_tracker(
    frames: list[FrameItem], queue_size: int, pace: float
) -> tuple[FrameTracker, list[Detection]]:
    tracker = FrameTracker(queue_size)
    tracker.start()
    results: list[Detection] = []
    tracker.attach(asyncio.get_running_loop(), results.append)
    assert await tracker.wait_ready(30)
    for frame in frames:
        tracker.submit(frame)
        await asyncio.sleep(pace)
    assert await tracker.drain(10)
    await asyncio.sleep(0.05)
    return tracker, results


async def test_results_carry_the_identity_of_their_frame_even_out_of_order() -> None:
    order = [5, 3, 4, 9, 0, 1, 2, 8, 7, 6, 100, 42]
    tracker, results = await run_tracker([item(i) for i in order], queue_size=32, pace=0.01)
    try:
        assert [r.frame for r in results] == order
        for r in results:
            truth = MODEL.position(r.frame)
            assert abs(r.x - truth.x) < 0.1
            assert abs(r.y - truth.y) < 0.1
        assert tracker.dropped == 0
        assert tracker.delivered == len(order)
    finally:
        tracker.close()


async def test_unreadable_and_empty_frames_are_counted_not_sent() -> None:
    blank = FrameItem(0, 320, 240, 320, bytes(320 * 240))
    tracker, results = await run_tracker([item(1, stamp=False), blank, item(2)], 8, 0.01)
    try:
        assert [r.frame for r in results] == [2]
        assert tracker.shared.unreadable.value == 2  # no marker on either
    finally:
        tracker.close()


async def test_queue_is_bounded_and_drops_the_oldest_when_behind() -> None:
    tracker = FrameTracker(queue_size=2)
    tracker.start()
    results: list[Detection] = []
    # No attach yet: process_a blocks on the result slot after its first frame, so it
    # falls behind and the queue must shed the oldest frames instead of growing.
    assert await tracker.wait_ready(30)
    try:
        for i in range(20):
            tracker.submit(item(i))
            await asyncio.sleep(0.005)
        await asyncio.sleep(0.3)
        assert tracker.dropped >= 15
        tracker.attach(asyncio.get_running_loop(), results.append)
        assert await tracker.drain(10)
        await asyncio.sleep(0.05)
        frames = [r.frame for r in results]
        assert frames[-1] == 19  # the newest frame survives
        assert len(frames) + tracker.dropped == 20
    finally:
        tracker.close()


async def test_close_leaves_no_process_behind() -> None:
    tracker = FrameTracker(2)
    tracker.start()
    assert await tracker.wait_ready(30)
    pid = tracker.pid
    assert pid is not None and psutil.pid_exists(pid)
    tracker.close()
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    assert not [c for c in psutil.Process(os.getpid()).children() if c.pid == pid]


def test_rejects_a_zero_queue() -> None:
    with pytest.raises(ValueError):
        FrameTracker(0)


DRIVER = Path(__file__).with_name("tracker_driver.py")


def descendants(pid: int) -> list[psutil.Process]:
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def still_running(procs: list[psutil.Process], timeout: float) -> list[int]:
    deadline = time.monotonic() + timeout
    while True:
        alive = []
        for proc in procs:
            with contextlib.suppress(psutil.NoSuchProcess):
                if proc.status() != psutil.STATUS_ZOMBIE:
                    alive.append(proc.pid)
        if not alive or time.monotonic() > deadline:
            return alive
        time.sleep(0.1)


def wait_until_reading_a_frame(pid: int, timeout: float = 20.0) -> None:
    """Return once process `pid` is blocked reading a pipe (a frame the client is writing)."""
    deadline = time.monotonic() + timeout
    wchan = Path(f"/proc/{pid}/wchan")
    while time.monotonic() < deadline:
        if wchan.read_text() == "anon_pipe_read":
            return
        time.sleep(0.001)
    pytest.skip("process_a was never seen blocked in a pipe read (no /proc wchan?)")


@pytest.mark.parametrize(
    ("mode", "kill_after_line"),
    [
        ("waiting", 1),  # process_a still starting, the client waiting for it (issue 8 #14)
        ("ready", 2),
        ("feeding", 3),  # 64 MB frames in the pipe: the kill lands mid-frame (#19)
    ],
)
def test_no_process_a_outlives_a_killed_client(mode: str, kill_after_line: int) -> None:
    driver = subprocess.Popen(
        [sys.executable, str(DRIVER), mode], stdout=subprocess.PIPE, text=True
    )
    try:
        assert driver.stdout is not None
        lines = [driver.stdout.readline() for _ in range(kill_after_line)]
        process_a = int(lines[0])
        if mode == "feeding":
            wait_until_reading_a_frame(process_a)
        family = descendants(driver.pid)  # process_a and multiprocessing's resource tracker
        assert process_a in [p.pid for p in family]
        driver.kill()
        driver.wait()
        survivors = still_running(family, timeout=10)
    finally:
        if driver.poll() is None:
            driver.kill()
            driver.wait()
    for pid in survivors:
        os.kill(pid, signal.SIGKILL)
    assert survivors == [], f"orphans after kill -9 of the client ({mode})"


async def test_a_dead_process_a_is_reported_at_once() -> None:
    tracker = FrameTracker(2)
    tracker.start()
    exits: list[str] = []
    gone = asyncio.Event()

    def on_exit(description: str) -> None:
        exits.append(description)
        gone.set()

    tracker.attach(asyncio.get_running_loop(), lambda _: None, on_exit)
    try:
        assert await tracker.wait_ready(30)
        assert tracker.pid is not None
        os.kill(tracker.pid, signal.SIGKILL)
        await asyncio.wait_for(gone.wait(), 10)
        assert exits == ["killed by SIGKILL"]
        assert not tracker.alive()
    finally:
        tracker.close()


async def test_process_a_leaves_ctrl_c_and_sigterm_to_the_client() -> None:
    tracker = FrameTracker(2)
    tracker.start()
    exits: list[str] = []
    tracker.attach(asyncio.get_running_loop(), lambda _: None, exits.append)
    try:
        assert await tracker.wait_ready(30)
        assert tracker.pid is not None
        os.kill(tracker.pid, signal.SIGINT)
        os.kill(tracker.pid, signal.SIGTERM)
        await asyncio.sleep(0.5)
        assert tracker.alive()
        assert exits == []
    finally:
        tracker.close()
    assert not tracker.alive()
    assert exits == []  # a requested stop is not reported as a death


async def test_wait_ready_gives_up_when_process_a_dies_first() -> None:
    tracker = FrameTracker(2)
    tracker.start()
    try:
        assert tracker.pid is not None
        os.kill(tracker.pid, signal.SIGKILL)
        started = time.monotonic()
        assert not await tracker.wait_ready(60)
        assert time.monotonic() - started < 30
    finally:
        tracker.close()


def no_ball(index: int) -> FrameItem:
    bgr = np.zeros((240, 320, 3), dtype=np.uint8)
    marker.stamp(bgr, index)
    return FrameItem(index, 320, 240, 320, cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY).tobytes())


async def test_frames_without_a_detection_are_named_with_why() -> None:
    tracker = FrameTracker(16)
    tracker.start()
    results: list[Detection] = []
    misses: list[tuple[int, str]] = []
    tracker.attach(
        asyncio.get_running_loop(), results.append, on_miss=lambda f, o: misses.append((f, o))
    )
    assert await tracker.wait_ready(30)
    try:
        # Frames 0..4 (1 unreadable, 3 without a ball), then frames 5 and 6 lost on the way:
        # frame 7 comes at seq 5, and the unreadable frame at seq 6 between frames 7 and 12
        # (seq 7) cannot be named.
        frames = [item(0), item(1, stamp=False), item(2), no_ball(3), item(4)]
        frames += [item(7, seq=5), item(8, seq=6, stamp=False), item(12, seq=7)]
        for frame in frames:
            tracker.submit(frame)
            await asyncio.sleep(0.01)
        assert await tracker.drain(10)
        await asyncio.sleep(0.05)
        assert [r.frame for r in results] == [0, 2, 4, 7, 12]
        assert misses == [(1, "unreadable"), (3, "no_ball")]
        assert tracker.shared.unreadable.value == 2 and tracker.shared.missed.value == 1
    finally:
        tracker.close()


async def test_dropped_frames_are_handed_back() -> None:
    tracker = FrameTracker(queue_size=2)
    tracker.start()
    dropped: list[FrameItem] = []
    tracker.attach(asyncio.get_running_loop(), lambda _: None, on_drop=dropped.append)
    assert await tracker.wait_ready(30)
    try:
        for i in range(20):  # no await: the loop cannot take results, process_a falls behind
            tracker.submit(item(i))
        assert len(dropped) == tracker.dropped >= 15
        assert [process_frame(d)[0] for d in dropped] == [d.seq for d in dropped]
        assert await tracker.drain(10)
    finally:
        tracker.close()


def test_unreadable_frames_are_named_only_when_the_neighbours_leave_no_doubt() -> None:
    frames = UnreadableFrames()
    assert frames.readable(0, 100) == []
    frames.unreadable(1)
    frames.unreadable(2)
    assert frames.readable(3, 103) == [101, 102]
    frames.unreadable(4)
    assert frames.readable(6, 107) == []  # 107 - 103 != 6 - 3: something was lost between
    frames.unreadable(7)
    assert frames.readable(8, 109) == [108]
