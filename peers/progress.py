"""A once-a-second progress line for a peer that runs without --verbose. Pure."""

from __future__ import annotations

from dataclasses import dataclass

INTERVAL_S = 1.0


@dataclass
class Progress:
    """Says when the next line is due and the rate of a counter since the previous line."""

    interval_s: float = INTERVAL_S
    _last_at: float | None = None
    _last_count: int = 0

    def due(self, now: float) -> bool:
        """True at most once per interval (the first call only starts the clock)."""
        if self._last_at is None:
            self._last_at = now
            return False
        return now - self._last_at >= self.interval_s

    def rate(self, count: int, now: float) -> float:
        """Per-second rate of `count` since the last call (or since the clock started)."""
        last_at = self._last_at if self._last_at is not None else now
        span = now - last_at
        rate = (count - self._last_count) / span if span > 0 else 0.0
        self._last_at, self._last_count = now, count
        return rate
