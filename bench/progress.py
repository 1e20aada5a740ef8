"""Progress lines for the benchmarks: what is running now, on stderr (the Markdown tables go
to stdout, so `make bench-operator > table.md` keeps only the tables)."""

from __future__ import annotations

import sys
import time

_START = time.monotonic()


def say(message: str) -> None:
    """One line on stderr, prefixed with the seconds since the benchmark started."""
    print(f"[{time.monotonic() - _START:7.1f} s] {message}", file=sys.stderr, flush=True)


class Every:
    """Rate-limits a repeated progress line to one per `seconds`."""

    def __init__(self, seconds: float = 5.0) -> None:
        self.seconds = seconds
        self._last = time.monotonic()

    def due(self) -> bool:
        """True at most once per `seconds` (not at the very first call)."""
        now = time.monotonic()
        if now - self._last < self.seconds:
            return False
        self._last = now
        return True
