"""The per-frame series a server stores in its own ConfigMap (`data.series`), read by the
operator and by `rebound_operator.report` as untrusted input. Pure.

Bounded before anything is parsed (at most `peers.series.CONFIGMAP_BYTES` bytes of UTF-8),
then strict: every line must be valid (`peers.series.read_series`), with the session line,
at least one frame and the summary line. The operator only counts what it holds (for an
Event saying how to render it); the series itself is never copied into the status.
"""

from __future__ import annotations

from dataclasses import dataclass

from peers.series import CONFIGMAP_BYTES, Series, read_series_text
from rebound_operator.text import one_line

SERIES_KEY = "series"
"""The key of the server's signaling ConfigMap holding the downsampled series."""


@dataclass(frozen=True)
class SeriesReading:
    """A series that passed the checks, or why it did not."""

    series: Series | None
    problem: str | None

    @property
    def frames(self) -> int:
        """Frames the stored series holds."""
        return len(self.series.frames) if self.series is not None else 0

    @property
    def frames_total(self) -> int:
        """Frames the server sent and recorded (before downsampling)."""
        if self.series is None:
            return 0
        return self.series.frames_total or len(self.series.frames)


def check_series(text: object) -> SeriesReading:
    """Read an untrusted `data.series` value; never raises, whatever it holds."""
    if not isinstance(text, str) or not text:
        return SeriesReading(None, "not a non-empty string")
    if len(text) > CONFIGMAP_BYTES:
        return SeriesReading(None, f"too large ({len(text)} characters; at most {CONFIGMAP_BYTES})")
    try:
        size = len(text.encode("utf-8"))
    except UnicodeEncodeError:
        return SeriesReading(None, "not valid UTF-8")
    if size > CONFIGMAP_BYTES:
        return SeriesReading(None, f"too large ({size} bytes; at most {CONFIGMAP_BYTES})")
    series = read_series_text(text, max_bytes=CONFIGMAP_BYTES)
    if series.bad_lines:
        reasons = ", ".join(f"{k} {v}" for k, v in sorted(series.bad_lines.items()))
        return SeriesReading(None, one_line(f"invalid lines: {reasons}"))
    if series.truncated:
        return SeriesReading(None, "larger than its bound")
    if series.spec is None:
        return SeriesReading(None, "no session line")
    if not series.frames:
        return SeriesReading(None, "no frame")
    if series.summary is None:
        return SeriesReading(None, "no summary line")
    return SeriesReading(series, None)


def report_hint(session: str, namespace: str, reading: SeriesReading) -> tuple[str, str, str]:
    """The Event (type, reason, message) about a finished session's stored series."""
    if reading.problem is not None:
        return "Warning", "MalformedSeries", f"ignored data.{SERIES_KEY}: {reading.problem}"
    kept = reading.frames
    total = reading.frames_total
    held = f"{kept} frames" if kept == total else f"{kept} of {total} frames (downsampled)"
    return (
        "Normal",
        "ReportReady",
        f"the server stored its per-frame series ({held}): render the report with "
        f"`kubectl rebound report {session} -n {namespace}` or "
        f"`python -m rebound_operator.report -n {namespace} {session} -o {session}.html`",
    )
