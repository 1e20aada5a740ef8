"""The API gate: bounded concurrency, first statuses first, then earlier sessions first."""

from __future__ import annotations

import asyncio
import threading

import pytest
from rebound_operator.api_queue import FIRST_STATUS, WORK, ApiGate


async def test_waiting_calls_go_in_priority_order_then_arrival_order() -> None:
    gate = ApiGate(1)
    release = threading.Event()
    order: list[str] = []

    def blocker() -> None:
        release.wait(5)

    def record(name: str) -> str:
        order.append(name)
        return name

    first = asyncio.create_task(gate.call((WORK, 0), blocker))
    await asyncio.sleep(0.05)  # the one slot is taken
    queued = [
        asyncio.create_task(gate.call((WORK, 7), record, "session 7")),
        asyncio.create_task(gate.call((WORK, 2), record, "session 2, a")),
        asyncio.create_task(gate.call((FIRST_STATUS, 9), record, "first status of 9")),
        asyncio.create_task(gate.call((WORK, 2), record, "session 2, b")),
    ]
    await asyncio.sleep(0.05)
    assert gate.waiting == 4
    release.set()
    await first
    assert await asyncio.gather(*queued) == [
        "session 7",
        "session 2, a",
        "first status of 9",
        "session 2, b",
    ]
    assert order == ["first status of 9", "session 2, a", "session 2, b", "session 7"]
    assert gate.waiting == 0
    gate.shutdown()


async def test_never_more_calls_in_flight_than_slots() -> None:
    gate = ApiGate(3)
    lock = threading.Lock()
    running = peak = 0

    def work() -> None:
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
        threading.Event().wait(0.02)
        with lock:
            running -= 1

    await asyncio.gather(*(gate.call((WORK, i % 5), work) for i in range(30)))
    assert peak == 3
    gate.shutdown()


async def test_a_cancelled_waiter_gives_up_its_turn_and_errors_free_the_slot() -> None:
    gate = ApiGate(1)
    release = threading.Event()
    holder = asyncio.create_task(gate.call((WORK, 0), release.wait, 5))
    await asyncio.sleep(0.05)
    leaver = asyncio.create_task(gate.call((WORK, 1), lambda: "never"))
    stayer = asyncio.create_task(gate.call((WORK, 2), lambda: "served"))
    await asyncio.sleep(0.05)
    leaver.cancel()
    release.set()
    await holder
    assert await stayer == "served"
    assert leaver.cancelled()

    def boom() -> None:
        raise RuntimeError("API down")

    with pytest.raises(RuntimeError, match="API down"):
        await gate.call((WORK, 3), boom)
    assert await gate.call((WORK, 4), lambda: "still works") == "still works"
    assert gate.waiting == 0
    gate.shutdown()
