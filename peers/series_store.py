"""A bounded copy of the per-frame series, for the server's own signaling ConfigMap.

The series writer hands it the same JSON lines it writes to `--series PATH` (it is a text sink:
`write`/`close`). However long the session, it keeps at most `capacity` frame lines: every
k-th frame by index, doubling k whenever more would be kept, plus the matched frame with the
largest error; the session line, the samples (bounded) and the summary line are kept as
they are. At the end `configmap_text` turns that into a series of at most
`peers.series.CONFIGMAP_BYTES` (`peers.series.downsample`), recording the stride and the
number of frames sent. Pure: no I/O; called from the writer thread only.
"""

from __future__ import annotations

import json
import math
from typing import Any

from peers import series

DEFAULT_CAPACITY = 4096
"""Frame lines kept in memory (~0.7 MB); the ConfigMap value holds about 1,200 of them."""


class DecimatedSeries:
    """A text sink keeping a bounded, evenly decimated copy of a series."""

    def __init__(self, capacity: int = DEFAULT_CAPACITY) -> None:
        if capacity < 2:
            raise ValueError("capacity must be at least 2")
        self.capacity = capacity
        self.stride = 1
        self.highest = -1
        self._session: str | None = None
        self._samples: list[str] = []
        self._summary: str | None = None
        self._frames: dict[int, str] = {}
        self._worst: tuple[float, int, str] | None = None
        self._partial = ""

    def write(self, text: str) -> int:
        """Take whole or partial lines, as a file would."""
        chunk = self._partial + text
        *lines, self._partial = chunk.split("\n")
        for line in lines:
            self._take(line)
        return len(text)

    def flush(self) -> None:
        """Nothing buffered beyond a partial line (file-like)."""

    def close(self) -> None:
        """Take a last unterminated line, if any."""
        if self._partial:
            self._take(self._partial)
            self._partial = ""

    def _take(self, line: str) -> None:
        if not line.strip():
            return
        try:
            obj: Any = json.loads(line)
        except ValueError:
            return  # our own writer's lines: cannot happen; never let it break the session
        kind = obj.get("type") if isinstance(obj, dict) else None
        if kind == "frame":
            self._frame(obj, line)
        elif kind == "session" and self._session is None:
            self._session = line
        elif kind == "sample" and len(self._samples) < series.MAX_SAMPLES:
            self._samples.append(line)
        elif kind == "summary":
            self._summary = line

    def _frame(self, obj: dict[str, Any], line: str) -> None:
        index = obj.get("frame")
        if not isinstance(index, int) or isinstance(index, bool) or index < 0:
            return
        self.highest = max(self.highest, index)
        error = obj.get("error_px")
        if isinstance(error, int | float) and not isinstance(error, bool) and math.isfinite(error):
            if self._worst is None or error > self._worst[0]:
                self._worst = (float(error), index, line)
        elif self._worst is not None and self._worst[1] == index:
            self._worst = None  # the frame was rewritten without a match
        if index % self.stride:
            return
        self._frames[index] = line  # a later line for the same frame replaces the earlier
        while len(self._frames) > self.capacity:
            self.stride *= 2
            self._frames = {i: kept for i, kept in self._frames.items() if i % self.stride == 0}

    @property
    def frames_kept(self) -> int:
        """Frame lines held now (at most `capacity`, plus the worst frame)."""
        return len(self._frames)

    def configmap_text(self, max_bytes: int = series.CONFIGMAP_BYTES) -> str | None:
        """The series as at most `max_bytes` bytes of JSON Lines (None without a session
        line or frames): what the server stores under `data.series`."""
        if self._session is None or not self._frames:
            return None
        frames = dict(self._frames)
        if self._worst is not None:
            frames.setdefault(self._worst[1], self._worst[2])
        lines = [self._session, *self._samples, *(frames[i] for i in sorted(frames))]
        if self._summary is not None:
            lines.append(self._summary)
        parsed = series.read_series(lines)
        if parsed.spec is None or not parsed.frames:
            return None
        parsed.stride = self.stride
        parsed.frames_total = self.highest + 1
        try:
            return series.downsample(parsed, max_bytes)
        except ValueError:
            return None
