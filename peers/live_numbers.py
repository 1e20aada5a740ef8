"""The running numbers of a session as the live view and the windows show them. Pure.

The server's state is read as a `Snapshot` (references to the arrays it keeps anyway, no
copies); `RunningNumbers` turns successive snapshots into values over the last second and
over the whole session.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from peers.matching import Match


@dataclass(frozen=True)
class Snapshot:
    """The server's state as the view reads it (references, no copies)."""

    phase: str
    frames_sent: int
    errors_px: Any
    """array('d') of every matched frame's error, in arrival order (only appended to)."""
    latencies_s: Any
    frames_dropped_by_client: int | None
    last_match: Match | None


class RunningNumbers:
    """Turns successive snapshots into the numbers on the page. Pure.

    `*_now` values are over the last sampling window (about one second), the others over
    the whole session.
    """

    def __init__(self, window_s: float = 1.0) -> None:
        self.window_s = window_s
        self._marks: list[tuple[float, int, int]] = []

    def update(self, snap: Snapshot, now: float) -> dict[str, Any]:
        """The numbers for `snap` taken at `now` (monotonic seconds)."""
        matched = len(snap.errors_px)
        self._marks.append((now, snap.frames_sent, matched))
        while len(self._marks) > 2 and now - self._marks[1][0] >= self.window_s:
            self._marks.pop(0)
        then, sent_then, matched_then = self._marks[0]
        span = now - then
        recent = np.frombuffer(snap.errors_px, dtype=np.float64)[matched_then:matched]
        recent_latency = np.frombuffer(snap.latencies_s, dtype=np.float64)[matched_then:matched]
        errors = np.frombuffer(snap.errors_px, dtype=np.float64)[:matched]
        last = snap.last_match

        def value(x: float | None, digits: int) -> float | None:
            return None if x is None or not math.isfinite(x) else round(x, digits)

        return {
            "phase": snap.phase,
            "frames_sent": snap.frames_sent,
            "frames_matched": matched,
            "frames_dropped_by_client": snap.frames_dropped_by_client,
            "fps_now": value((snap.frames_sent - sent_then) / span if span > 0 else None, 1),
            "matched_per_s_now": value((matched - matched_then) / span if span > 0 else None, 1),
            "error_px_now": value(float(recent.mean()) if recent.size else None, 4),
            "error_px_mean": value(float(errors.mean()) if errors.size else None, 4),
            "error_px_p95": value(float(np.percentile(errors, 95)) if errors.size else None, 4),
            "latency_ms_now": value(
                float(np.median(recent_latency)) * 1000 if recent_latency.size else None, 1
            ),
            "last_frame": None if last is None else last.frame,
            "last_error_px": None if last is None else round(last.error_px, 4),
        }
