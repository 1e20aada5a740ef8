"""When is the other peer gone, and when has progress stalled? Pure bookkeeping on a clock.

`Silence` answers "have we heard anything from the other peer lately?" (every data-channel
message counts, heartbeats included); `Stall` answers "has this counter stopped growing?"
and fires once per stall, so a frozen `matched` gets one warning, not one per second.
"""

from __future__ import annotations

from peers.protocol import SILENCE_LIMIT_S

STALL_WARNING_S = 3.0


class Silence:
    """Tracks the last sign of life of the other peer."""

    def __init__(self, limit_s: float = SILENCE_LIMIT_S) -> None:
        self.limit_s = limit_s
        self.last_heard: float | None = None

    def heard(self, now: float) -> None:
        """The other peer said something at `now`."""
        self.last_heard = now

    def quiet_for(self, now: float) -> float:
        """Seconds since the last sign of life (0 before anything was expected)."""
        return 0.0 if self.last_heard is None else max(0.0, now - self.last_heard)

    def silent(self, now: float) -> bool:
        """True once nothing was heard for longer than the limit."""
        return self.quiet_for(now) > self.limit_s


class Stall:
    """Fires once when `value` has not grown for `after_s` seconds; re-arms when it grows."""

    def __init__(self, after_s: float = STALL_WARNING_S) -> None:
        self.after_s = after_s
        self._value: int | None = None
        self._since = 0.0
        self._warned = False

    def update(self, now: float, value: int) -> bool:
        """Record `value` at `now`; True exactly when a stall is first detected."""
        if self._value is None or value != self._value:
            self._value, self._since, self._warned = value, now, False
            return False
        if not self._warned and now - self._since >= self.after_s:
            self._warned = True
            return True
        return False

    @property
    def stalled(self) -> bool:
        """True between a detected stall and the next growth."""
        return self._warned
