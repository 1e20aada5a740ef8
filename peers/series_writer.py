"""The server's `--series PATH`: each frame's fate, collected on the event loop, written by a
thread as JSON Lines (format: peers.series, docs/CONTRACTS.md).

On the loop, a sent frame, a match or a client's outcome report is a few stores into
preallocated arrays. A frame is *settled* once it matched or was sent more than
`horizon_s` ago; `flush(now)` (called from the server's periodic tick, not per frame) hands the
settled frames, in index order, to a writer thread that computes their truth, formats and
appends the lines. A coordinate arriving after its frame was written as `lost` appends a
second line for that frame (readers keep the last one).
"""

from __future__ import annotations

import asyncio
import math
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import IO, Any, Protocol

import numpy as np

from peers import series
from peers.ball import BallModel
from peers.config import SessionSpec
from peers.matching import SEND_WINDOW, Match

HORIZON_S = 10.0
"""A frame that has not matched this long after it was sent is written as it stands."""

_OUTCOME_CODES = {name: code for code, name in enumerate(series.OUTCOMES)}
_LOST = _OUTCOME_CODES[series.LOST]
_MATCHED = _OUTCOME_CODES[series.MATCHED]

Row = tuple[int, float, float, float, float, float, int]
"""frame, t_s, x, y, error_px, latency_s (NaN when not matched), outcome code."""


class SeriesError(Exception):
    """The series file could not be written (the message says why, in one line)."""


class TextSink(Protocol):
    """Where else the lines go (e.g. `series_store.DecimatedSeries`): file-like text."""

    def write(self, text: str) -> int:
        """Take text (whole lines here)."""

    def close(self) -> None:
        """No more text follows."""


class SeriesWriter:
    """Per-frame bookkeeping for one session and the thread that writes it to `path` (if
    any) and to `also` (if any: the bounded copy the server stores in its ConfigMap)."""

    def __init__(
        self,
        path: Path | None,
        spec: SessionSpec,
        model: BallModel,
        *,
        horizon_s: float = HORIZON_S,
        window: int = SEND_WINDOW,
        also: TextSink | None = None,
    ) -> None:
        self.path = path
        self.model = model
        self.horizon_s = horizon_s
        self.lines_written = 0
        self._window = window
        self._index = np.full(window, -1, dtype=np.int64)
        self._sent_at = np.zeros(window, dtype=np.float64)
        self._x = np.zeros(window, dtype=np.float64)
        self._y = np.zeros(window, dtype=np.float64)
        self._error = np.zeros(window, dtype=np.float64)
        self._latency = np.zeros(window, dtype=np.float64)
        self._outcome = np.zeros(window, dtype=np.int8)
        self._written = np.zeros(window, dtype=bool)
        self._first_sent: float | None = None
        self._next = 0
        self._highest = -1
        self._problem: str | None = None
        self._closed = False
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="series")
        self._also = also
        self._file: IO[str] | None = None
        try:
            if path is not None:
                self._file = path.open("w", encoding="utf-8")
        except OSError as exc:
            raise SeriesError(f"cannot write --series {path}: {exc.strerror or exc}") from None
        self._submit(self._write_lines, [series.session_line(spec)])

    # ---- on the event loop: stores only -------------------------------------------------

    def on_sent(self, index: int, now: float) -> None:
        """Frame `index` left for the encoder at `now` (monotonic seconds)."""
        slot = index % self._window
        self._index[slot] = index
        self._sent_at[slot] = now
        self._outcome[slot] = _LOST
        self._written[slot] = False
        if self._first_sent is None:
            self._first_sent = now
        if index > self._highest:
            self._highest = index

    def on_match(self, match: Match) -> None:
        """A coordinate came back for `match.frame` (the matcher accepted it)."""
        slot = self._slot(match.frame)
        if slot is None:
            return
        self._x[slot] = match.detected.x
        self._y[slot] = match.detected.y
        self._error[slot] = match.error_px
        self._latency[slot] = match.latency_s
        self._outcome[slot] = _MATCHED
        if self._written[slot]:  # settled as lost, then the coordinate came after all
            self._submit(self._write_rows, [self._row(slot)])

    def on_outcome(self, frame: int, outcome: str) -> None:
        """The client says why `frame` brought no coordinate (dropped, unreadable, no_ball)."""
        slot = self._slot(frame)
        code = _OUTCOME_CODES.get(outcome)
        if slot is not None and code is not None and self._outcome[slot] == _LOST:
            self._outcome[slot] = code

    def _slot(self, frame: int) -> int | None:
        slot = frame % self._window
        return slot if self._index[slot] == frame else None

    def _row(self, slot: int) -> Row:
        matched = self._outcome[slot] == _MATCHED
        nan = math.nan
        first = self._first_sent or 0.0
        return (
            int(self._index[slot]),
            float(self._sent_at[slot]) - first,
            float(self._x[slot]) if matched else nan,
            float(self._y[slot]) if matched else nan,
            float(self._error[slot]) if matched else nan,
            float(self._latency[slot]) if matched else nan,
            int(self._outcome[slot]),
        )

    def flush(self, now: float, *, final: bool = False) -> None:
        """Hand every settled frame (all sent frames when `final`) to the writer thread."""
        rows: list[Row] = []
        settled_before = now - self.horizon_s
        while self._next <= self._highest:
            slot = self._next % self._window
            if self._index[slot] != self._next:
                if not final:
                    break  # sent out of order: not here yet
                self._next += 1
                continue
            settled = self._outcome[slot] == _MATCHED or self._sent_at[slot] < settled_before
            if not (final or settled):
                break
            rows.append(self._row(slot))
            self._written[slot] = True
            self._next += 1
        if rows:
            self._submit(self._write_rows, rows)

    # ---- in the writer thread -----------------------------------------------------------

    def _submit(self, job: Any, payload: list[Any]) -> None:
        if not self._closed:
            self._executor.submit(job, payload)

    def _write_lines(self, lines: list[str]) -> None:
        if self._problem is not None:
            return
        text = "".join(f"{line}\n" for line in lines)
        try:
            if self._file is not None:
                self._file.write(text)
            if self._also is not None:
                self._also.write(text)
            self.lines_written += len(lines)
        except (OSError, ValueError) as exc:
            self._problem = f"cannot write --series {self.path}: {getattr(exc, 'strerror', exc)}"

    def _write_rows(self, rows: list[Row]) -> None:
        lines = []
        for frame, t_s, x, y, error, latency, code in rows:
            truth = self.model.position(frame)
            matched = code == _MATCHED
            record = series.FrameRecord(
                frame=frame,
                t_s=max(t_s, 0.0),
                true_x=truth.x,
                true_y=truth.y,
                x=x if matched else None,
                y=y if matched else None,
                error_px=error if matched else None,
                latency_ms=latency * 1000.0 if matched else None,
                outcome=series.OUTCOMES[code],
            )
            lines.append(series.frame_line(record))
        self._write_lines(lines)

    # ---- the end ------------------------------------------------------------------------

    def add_lines(self, lines: list[str]) -> None:
        """Append ready-made lines (samples) after the frames handed over so far."""
        self._submit(self._write_lines, lines)

    async def close(self, summary: dict[str, Any] | None) -> None:
        """Write every remaining frame and the summary line (once; a later call with a
        summary raises the same SeriesError again, others do nothing); SeriesError if
        anything could not be written."""
        if self._closed:
            if self._problem is not None and summary is not None:
                raise SeriesError(self._problem)  # told again to whoever ends the series
            return
        self.flush(0.0, final=True)
        if summary is not None:
            self._submit(self._write_lines, [series.summary_line(summary)])
        self._closed = True
        await asyncio.to_thread(self._finish)
        if self._problem is not None:
            raise SeriesError(self._problem)

    def _finish(self) -> None:
        self._executor.shutdown(wait=True)
        if self._also is not None:
            self._also.close()
        try:
            if self._file is not None:
                self._file.close()
        except OSError as exc:
            self._problem = self._problem or f"cannot write --series {self.path}: {exc}"
