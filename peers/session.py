"""Session plumbing both peers share: connect within a deadline, wait on events, fail loudly."""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import Coroutine
from typing import Any

from peers.signaling.base import Signaling, SignalingError

CONNECTED = "connected"
INTERRUPTED = "interrupted"
TIMED_OUT = "timed out"


async def first_of(*events: asyncio.Event, timeout: float | None = None) -> None:
    """Return when any of `events` is set, or after `timeout` seconds."""
    waiters = [asyncio.ensure_future(event.wait()) for event in events]
    try:
        await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()


async def connect_within(
    connecting: Coroutine[Any, Any, None], stop: asyncio.Event, timeout: float
) -> str:
    """Run the signaling/connection coroutine until done, stopped or timed out.

    Returns CONNECTED, INTERRUPTED or TIMED_OUT; a SignalingError from `connecting` propagates.
    """
    task = asyncio.ensure_future(connecting)
    stopped = asyncio.ensure_future(stop.wait())
    done, _ = await asyncio.wait(
        {task, stopped}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
    )
    stopped.cancel()
    if task in done:
        task.result()
        return CONNECTED
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError, SignalingError, OSError):
        await task
    return INTERRUPTED if stop.is_set() else TIMED_OUT


async def fail(prog: str, signaling: Signaling, message: str, code: int) -> int:
    """Print `prog: error: message`, tell observers (ConfigMap signaling), return `code`."""
    print(f"{prog}: error: {message}", file=sys.stderr, flush=True)
    publish_error = getattr(signaling, "publish_error", None)
    if publish_error is not None:
        with contextlib.suppress(Exception):
            await publish_error(message)
    return code
