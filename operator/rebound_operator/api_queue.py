"""The operator's synchronous API calls, run on a bounded thread pool in priority order.

When many sessions arrive at once the API server, not the operator, is the bottleneck, so
what matters is which request goes next. Every call names a priority; among waiting calls
the lowest goes first, ties in arrival order:

- `(FIRST_STATUS, n)`: a new session's first status, so `kubectl get` shows every session
  at once instead of after its children;
- `(WORK, n)` with `n` the session's arrival number: everything else, so earlier sessions
  finish first instead of all of them advancing in lockstep and finishing together.

The same ordering (`PrioritySemaphore`) bounds how many sessions build and create their
children at once, so a thousand sessions arriving together do not hold a thousand sets of
manifests in memory while they wait.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")
Priority = tuple[int, int]
FIRST_STATUS = 0
WORK = 1


class PrioritySemaphore:
    """At most `slots` holders at once; waiters get in lowest priority first, ties in
    arrival order (a slot passes straight to the next in line)."""

    def __init__(self, slots: int) -> None:
        self.slots = slots
        self._free = slots
        self._live = 0
        """Waiters not yet served nor cancelled."""
        self._waiting: list[tuple[Priority, int, asyncio.Future[None]]] = []
        self._order = itertools.count()

    @property
    def waiting(self) -> int:
        """Holders waiting for a slot."""
        return self._live

    async def acquire(self, priority: Priority) -> None:
        """Wait for a slot (and take it)."""
        if self._free > 0 and not self._live:
            self._free -= 1
            return
        turn: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._waiting, (priority, next(self._order), turn))
        self._live += 1
        try:
            await turn
        except asyncio.CancelledError:
            if turn.cancelled():
                self._live -= 1  # never served: it just leaves the line
            else:
                self.release()  # the slot was handed over just as we were cancelled
            raise

    def release(self) -> None:
        """Give a slot back: to the next in line, if any."""
        while self._waiting:
            _, _, turn = heapq.heappop(self._waiting)
            if not turn.done():
                self._live -= 1
                turn.set_result(None)
                return
        self._free += 1

    @contextlib.asynccontextmanager
    async def hold(self, priority: Priority) -> AsyncIterator[None]:
        """`async with semaphore.hold(priority):` one slot for the block."""
        await self.acquire(priority)
        try:
            yield
        finally:
            self.release()


class ApiGate:
    """At most `slots` calls in flight (one thread each); the rest wait their turn."""

    def __init__(self, slots: int) -> None:
        self.slots = slots
        self._line = PrioritySemaphore(slots)
        self._pool = ThreadPoolExecutor(max_workers=slots, thread_name_prefix="kube-api")

    @property
    def waiting(self) -> int:
        """Calls waiting for a slot."""
        return self._line.waiting

    async def call(self, priority: Priority, fn: Callable[..., T], *args: object) -> T:
        """Run `fn(*args)` in a thread once a slot is free and no earlier priority waits."""
        async with self._line.hold(priority):
            return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)

    def shutdown(self) -> None:
        """Stop the threads (after the operator stopped)."""
        self._pool.shutdown(wait=False, cancel_futures=True)
