"""What a server session leaves behind besides its summary: the per-frame series
(`--series`) and the HTML report (`--report`), which is rendered from that series; `also`
receives the same lines (the bounded copy a server stores in its ConfigMap).

With `--report` alone the series goes to a temporary file that is removed once the report
is written. The report is rendered in a thread after the session ended (matplotlib takes a
second or two), never while frames flow.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import tempfile
from pathlib import Path
from typing import Any

from peers.ball import BallModel
from peers.config import SessionSpec
from peers.series_writer import SeriesError, SeriesWriter, TextSink


class OutputError(Exception):
    """An output could not be written (one line for the user)."""


def report_unavailable() -> str | None:
    """Why --report cannot work in this installation, or None."""
    from peers.report import matplotlib_missing

    missing = matplotlib_missing()
    return None if missing is None else f"--report needs matplotlib: {missing}"


class SessionOutputs:
    """The series writer (when a series or a report is wanted) and the report at the end."""

    def __init__(
        self,
        series_path: Path | None,
        report_path: Path | None,
        spec: SessionSpec,
        model: BallModel,
        *,
        also: TextSink | None = None,
    ) -> None:
        self.report_path = report_path
        self._temporary: Path | None = None
        self.writer: SeriesWriter | None = None
        if series_path is None and report_path is not None:
            fd, name = tempfile.mkstemp(prefix="rebound-series-", suffix=".jsonl")
            os.close(fd)
            series_path = self._temporary = Path(name)
        if series_path is not None or also is not None:
            try:
                self.writer = SeriesWriter(series_path, spec, model, also=also)
            except SeriesError as exc:
                self._remove_temporary()
                raise OutputError(str(exc)) from None

    async def finish(self, summary: dict[str, Any]) -> None:
        """Write the rest of the series, then the report; OutputError if either fails."""
        if self.writer is None:
            return
        try:
            await self.writer.close(summary)
            if self.report_path is not None and self.writer.path is not None:
                await asyncio.to_thread(self._render, self.writer.path, self.report_path)
        except SeriesError as exc:
            raise OutputError(str(exc)) from None
        finally:
            self._remove_temporary()

    @staticmethod
    def _render(series_path: Path, report_path: Path) -> None:
        from peers import report

        try:
            read = report.read_series_file(series_path)
            report.write_report(read, report_path)
        except report.ReportError as exc:
            raise OutputError(f"--report {report_path}: {exc}") from None

    async def close(self) -> None:
        """Stop writing (the session ended early); whatever was written stays."""
        if self.writer is not None:
            with contextlib.suppress(SeriesError):
                await self.writer.close(None)
        self._remove_temporary()

    def _remove_temporary(self) -> None:
        if self._temporary is not None:
            with contextlib.suppress(OSError):
                self._temporary.unlink()
            self._temporary = None
