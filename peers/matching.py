"""The server's bookkeeping: which frame was sent when, and each coordinate's error.

Pure logic (no aiortc): `CoordinateMatcher.on_message` takes a raw data-channel message and
returns what happened, so tests can feed it hostile input and out-of-order coordinates.
The client's counters are checked against what the server knows (the channel is ordered,
so when counters arrive every coordinate sent before them has arrived too): counters that
claim more frames than were sent, or fewer than were matched, are refused as implausible.
Nothing from the client is taken after its final counters.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np

from peers import protocol
from peers.ball import BallModel, Position
from peers.metrics import SessionStats, euclidean

SEND_WINDOW = 1 << 16
"""Frames remembered for matching (~18 min at 60 fps); older coordinates are 'stale'."""


@dataclass(frozen=True)
class Match:
    """A coordinate tied to the frame it was measured on."""

    frame: int
    detected: Position
    truth: Position
    error_px: float
    latency_s: float


class CoordinateMatcher:
    """Ties coordinates to frames by frame id and accumulates the session's statistics."""

    def __init__(self, model: BallModel, window: int = SEND_WINDOW) -> None:
        self.model = model
        self.stats = SessionStats()
        self.rejected: Counter[str] = Counter()
        self.client: protocol.ClientStats | None = None
        self.final: protocol.ClientStats | None = None
        self._window = window
        self._sent_index = np.full(window, -1, dtype=np.int64)
        self._sent_at = np.zeros(window, dtype=np.float64)
        self._matched = np.zeros(window, dtype=bool)

    def on_frame_sent(self, index: int, now: float) -> None:
        """Remember that frame `index` left for the encoder at `now`."""
        slot = index % self._window
        self._sent_index[slot] = index
        self._sent_at[slot] = now
        self._matched[slot] = False
        self.stats.record_sent(now)

    def on_message(self, message: object, now: float) -> Match | protocol.Message | None:
        """Handle one data-channel message: a Match, other valid message, or None (rejected)."""
        try:
            decoded = protocol.decode(message)
        except protocol.ProtocolError as exc:
            self.rejected[exc.reason] += 1
            return None
        from_client = (
            protocol.ClientStats,
            protocol.Coordinate,
            protocol.FrameOutcome,
            protocol.SampleChunk,
        )
        if isinstance(decoded, from_client) and self.final:
            self.rejected["after_final"] += 1
            return None
        if isinstance(decoded, protocol.ClientStats):
            return self._client_stats(decoded)
        if isinstance(decoded, protocol.Coordinate):
            return self._match(decoded, now)
        if isinstance(decoded, protocol.FrameOutcome | protocol.SampleChunk):
            return decoded if self._known(decoded.frame) else None
        if isinstance(decoded, protocol.End):
            self.rejected["unexpected_kind"] += 1
            return None
        return decoded

    def _client_stats(self, stats: protocol.ClientStats) -> protocol.ClientStats | None:
        lost_before_detection = stats.dropped + stats.unreadable + stats.missed
        if (
            stats.received + stats.incomplete > self.stats.frames_sent + 1  # + the flush frame
            or stats.received < self.stats.frames_matched
            or lost_before_detection > stats.received
        ):
            self.rejected["implausible_counters"] += 1
            return None
        self.client = stats
        self.stats.frames_dropped_by_client = stats.dropped
        if stats.final:
            self.final = stats
        return stats

    def _known(self, frame: int) -> bool:
        """True when `frame` was sent (and is still remembered); else counted `unknown_frame`."""
        slot = frame % self._window
        if self._sent_index[slot] != frame:
            self.rejected["unknown_frame"] += 1
            return False
        return True

    def _match(self, coordinate: protocol.Coordinate, now: float) -> Match | None:
        self.stats.coordinates_received += 1
        slot = coordinate.frame % self._window
        if self._sent_index[slot] != coordinate.frame:
            self.rejected["unknown_frame"] += 1
            return None
        if self._matched[slot]:
            self.rejected["duplicate"] += 1
            return None
        self._matched[slot] = True
        truth = self.model.position(coordinate.frame)
        error = euclidean(coordinate.x, coordinate.y, truth.x, truth.y)
        latency = now - float(self._sent_at[slot])
        self.stats.record_match(error, latency)
        return Match(coordinate.frame, Position(coordinate.x, coordinate.y), truth, error, latency)
