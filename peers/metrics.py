"""Session statistics: per-frame errors and latencies in, the summary dict out."""

from __future__ import annotations

import math
from array import array
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from peers.config import SUMMARY_KEYS, SessionSpec
from peers.protocol import ClientStats

__all__ = [
    "SUMMARY_KEYS",
    "SessionStats",
    "euclidean",
    "format_summary",
    "percentile",
    "summary_document",
]


def euclidean(ax: float, ay: float, bx: float, by: float) -> float:
    """Distance in pixels between (ax, ay) and (bx, by)."""
    return math.hypot(ax - bx, ay - by)


def percentile(values: Sequence[float] | npt.NDArray[np.float64], q: float) -> float | None:
    """The q-th percentile (0..100, linear interpolation) of `values`, None if empty."""
    if not len(values):
        return None
    return float(np.percentile(np.asarray(values, dtype=np.float64), q))


def _rounded(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)


@dataclass
class SessionStats:
    """Running record of one session as the server sees it."""

    frames_sent: int = 0
    coordinates_received: int = 0
    frames_dropped_by_client: int | None = None
    # 8 bytes per matched frame each (array, not list): ~1 MB/hour at 60 fps.
    errors_px: array[float] = field(default_factory=lambda: array("d"))
    latencies_s: array[float] = field(default_factory=lambda: array("d"))
    first_frame_at: float | None = None
    last_frame_at: float | None = None

    def record_sent(self, now: float) -> None:
        """Count one frame handed to the encoder at monotonic time `now`."""
        self.frames_sent += 1
        if self.first_frame_at is None:
            self.first_frame_at = now
        self.last_frame_at = now

    def record_match(self, error_px: float, latency_s: float) -> None:
        """Count one coordinate matched to its frame."""
        self.errors_px.append(error_px)
        self.latencies_s.append(latency_s)

    @property
    def frames_matched(self) -> int:
        """Frames for which a valid coordinate came back."""
        return len(self.errors_px)

    def achieved_fps(self) -> float | None:
        """Frames per second actually sent, over the span from first to last frame."""
        if self.first_frame_at is None or self.last_frame_at is None or self.frames_sent < 2:
            return None
        span = self.last_frame_at - self.first_frame_at
        return (self.frames_sent - 1) / span if span > 0 else None

    def summary(self) -> dict[str, Any]:
        """The summary object, exactly `SUMMARY_KEYS`, JSON-ready (None for unknown)."""
        errors = self.errors_px
        latencies_ms = np.frombuffer(self.latencies_s, dtype=np.float64) * 1000.0
        return {
            "frames_sent": self.frames_sent,
            "coordinates_received": self.coordinates_received,
            "frames_matched": self.frames_matched,
            "frames_dropped_by_client": self.frames_dropped_by_client,
            "mean_error_px": _rounded(math.fsum(errors) / len(errors) if errors else None, 4),
            "p95_error_px": _rounded(percentile(errors, 95), 4),
            "max_error_px": _rounded(max(errors) if errors else None, 4),
            "achieved_fps": _rounded(self.achieved_fps(), 2),
            "latency_ms_p50": _rounded(percentile(latencies_ms, 50), 2),
            "latency_ms_p95": _rounded(percentile(latencies_ms, 95), 2),
        }


def summary_document(
    summary: dict[str, Any], spec: SessionSpec, client: ClientStats | None
) -> dict[str, Any]:
    """The measured keys (`summary`), then `session` (the parameters) and `client` (its last
    accepted counters, None if it never reported): what --summary-json and the ConfigMap get."""
    counters = None
    if client is not None:
        counters = {
            "received": client.received,
            "dropped": client.dropped,
            "unreadable": client.unreadable,
            "no_ball": client.missed,
            "incomplete": client.incomplete,
            "final": client.final,
        }
    return {**summary, "session": spec.model_dump(), "client": counters}


def format_summary(summary: dict[str, Any]) -> str:
    """A short human-readable rendering of a summary dict."""

    def num(key: str, unit: str = "", digits: int = 3) -> str:
        value = summary.get(key)
        return "n/a" if value is None else f"{value:.{digits}f}{unit}"

    def count(key: str) -> str:
        value = summary.get(key)
        return "unknown" if value is None else str(value)

    sent = summary["frames_sent"]
    matched = summary["frames_matched"]
    ratio = f"{100.0 * matched / sent:.1f}%" if sent else "n/a"
    dropped = summary.get("frames_dropped_by_client")
    lines = [
        f"frames sent        {sent}  ({num('achieved_fps', ' fps', 2)})",
        f"frames matched     {matched}  ({ratio})",
        f"coordinates recv   {summary['coordinates_received']}",
        f"client drops       {'unknown' if dropped is None else dropped}",
        f"error (px)         mean {num('mean_error_px')}  p95 {num('p95_error_px')}"
        f"  max {num('max_error_px')}",
        f"latency (ms)       p50 {num('latency_ms_p50', '', 1)}"
        f"  p95 {num('latency_ms_p95', '', 1)}",
    ]
    if "codec" in summary:
        path = (
            f"{summary['ice_local_candidate_type'] or '?'} -> "
            f"{summary['ice_remote_candidate_type'] or '?'} ({summary['ice_protocol'] or '?'})"
        )
        lines += [
            f"video              {summary['codec'] or 'n/a'}  target "
            f"{summary['target_bitrate_kbps']} kbit/s  measured "
            f"{num('measured_bitrate_kbps', ' kbit/s', 0)}",
            f"frames spoilt      unreadable {count('frames_unreadable')}"
            f"  incomplete {count('frames_incomplete')}",
            f"path               {path}  rtt {num('rtt_ms', ' ms', 1)}"
            f"  lost {count('packets_lost')} packets ({num('packet_loss_pct', '%', 2)})",
        ]
    return "\n".join(lines)
