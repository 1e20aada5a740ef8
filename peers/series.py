"""The per-frame series: one JSON line per frame the server sent, read back strictly. Pure.

A series is JSON Lines (UTF-8, one compact object per line, `"type"` says which):

- `session` (first): the format name, the session parameters (`SessionSpec` fields) and, in a
  downsampled series, which frames were kept;
- `frame`: one frame's fate (`FrameRecord`: truth, detection, error, latency, outcome);
- `sample`: a crop of a frame as the client received it, for the report's strip;
- `summary` (last): the server's summary document.

Reading is for untrusted text (a file someone hands over, a ConfigMap value): every line is
bounded and validated, a bad line is counted by reason and skipped, and nothing raises.
`downsample` keeps a series under a byte bound (e.g. a ConfigMap value) by keeping every k-th
frame plus the worst one, with the exact totals still in the summary.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Final

from pydantic import ValidationError

from peers.config import SUMMARY_KEYS, SessionSpec

FORMAT: Final = "rebound.series/1"
MATCHED: Final = "matched"
DROPPED: Final = "dropped"
UNREADABLE: Final = "unreadable"
NO_BALL: Final = "no_ball"
LOST: Final = "lost"
OUTCOMES: Final = (MATCHED, DROPPED, UNREADABLE, NO_BALL, LOST)
"""What happened to a frame: a coordinate came back (`matched`); the client dropped it because
process_a was behind (`dropped`); its marker did not survive the codec (`unreadable`); the
detector found no ball (`no_ball`); nothing came back and the client said nothing (`lost`)."""

MAX_LINE_BYTES: Final = 65_536
"""Longest line read (a sample's PNG is at most MAX_SAMPLE_PNG_BYTES, base64-encoded)."""
MAX_SAMPLE_PNG_BYTES: Final = 32_768
MAX_SAMPLES: Final = 64
MAX_FRAME_INDEX: Final = (1 << 24) - 2
"""The marker's 24-bit index, minus the reserved flush frame."""
MAX_COORDINATE: Final = 1e6
MAX_TIME_S: Final = 1e7
MAX_LATENCY_MS: Final = 8.64e7
DEFAULT_MAX_FRAMES: Final = 20_000_000
CONFIGMAP_BYTES: Final = 200_000
"""The bound for a series stored in a ConfigMap value (which holds at most 1 MiB in all)."""

_FRAME_KEYS = frozenset(
    {"type", "frame", "t_s", "true_x", "true_y", "x", "y", "error_px", "latency_ms", "outcome"}
)
_SAMPLE_KEYS = frozenset({"type", "frame", "x0", "y0", "scale", "png"})
_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@dataclass(frozen=True, slots=True)
class FrameRecord:
    """The fate of one frame: where the ball was, what came back, and how late."""

    frame: int
    t_s: float
    """Seconds from the first frame sent to this frame being handed to the encoder."""
    true_x: float
    true_y: float
    x: float | None
    y: float | None
    error_px: float | None
    latency_ms: float | None
    outcome: str


@dataclass(frozen=True, slots=True)
class Sample:
    """A grey crop of a received frame: PNG bytes whose pixel (0, 0) is frame pixel
    (x0, y0) and whose pixels are `scale` frame pixels wide."""

    frame: int
    x0: float
    y0: float
    scale: float
    png: bytes


@dataclass
class Series:
    """A series as read back: what was valid, and what was skipped and why."""

    spec: SessionSpec | None = None
    stride: int = 1
    """1, or k when only every k-th frame (plus the worst) was kept."""
    frames_total: int | None = None
    """Frames in the series before downsampling (None when not downsampled)."""
    frames: list[FrameRecord] = field(default_factory=list)
    samples: list[Sample] = field(default_factory=list)
    summary: dict[str, Any] | None = None
    bad_lines: Counter[str] = field(default_factory=Counter)
    truncated: bool = False
    """True when reading stopped at a bound (bytes, lines or frames)."""


# ---- writing ---------------------------------------------------------------------------


def _round(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)


def _line(obj: dict[str, Any]) -> str:
    return json.dumps(obj, separators=(",", ":"), allow_nan=False)


def session_line(spec: SessionSpec, stride: int = 1, frames_total: int | None = None) -> str:
    """The first line of a series: format, session parameters, downsampling."""
    obj: dict[str, Any] = {"type": "session", "format": FORMAT, "spec": spec.model_dump()}
    if stride != 1 or frames_total is not None:
        obj["downsampled"] = {"stride": stride, "frames_total": frames_total}
    return _line(obj)


def frame_line(record: FrameRecord) -> str:
    """One frame as a line (positions and errors to 1e-4 px, times to 0.1 ms / 0.01 ms)."""
    return _line(
        {
            "type": "frame",
            "frame": record.frame,
            "t_s": round(record.t_s, 4),
            "true_x": round(record.true_x, 4),
            "true_y": round(record.true_y, 4),
            "x": _round(record.x, 4),
            "y": _round(record.y, 4),
            "error_px": _round(record.error_px, 4),
            "latency_ms": _round(record.latency_ms, 2),
            "outcome": record.outcome,
        }
    )


def sample_line(sample: Sample) -> str:
    """A received-frame crop as a line (PNG in base64)."""
    return _line(
        {
            "type": "sample",
            "frame": sample.frame,
            "x0": sample.x0,
            "y0": sample.y0,
            "scale": sample.scale,
            "png": base64.b64encode(sample.png).decode("ascii"),
        }
    )


def summary_line(summary: dict[str, Any]) -> str:
    """The last line of a series: the server's summary document."""
    return _line({"type": "summary", "summary": summary})


# ---- reading ---------------------------------------------------------------------------


class BadLine(Exception):
    """A line that is not part of a valid series; the message is the reason (a short slug)."""


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj: dict[str, Any] = {}
    for key, value in pairs:
        if key in obj:
            raise BadLine("duplicate_key")
        obj[key] = value
    return obj


def _refuse_constant(name: str) -> Any:
    raise BadLine("not_finite")


def _loads(text: str) -> dict[str, Any]:
    try:
        obj = json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_refuse_constant)
    except BadLine:
        raise
    except (ValueError, RecursionError):
        raise BadLine("not_json") from None
    if not isinstance(obj, dict):
        raise BadLine("not_an_object")
    return obj


def _number(obj: dict[str, Any], key: str, low: float, high: float) -> float:
    value = obj[key]
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise BadLine(f"bad_{key}")
    if isinstance(value, int) and not low <= value <= high:  # before float(): huge ints
        raise BadLine(f"bad_{key}")
    value = float(value)
    if not (math.isfinite(value) and low <= value <= high):
        raise BadLine(f"bad_{key}")
    return value


def _optional(obj: dict[str, Any], key: str, low: float, high: float) -> float | None:
    return None if obj[key] is None else _number(obj, key, low, high)


def _frame_index(obj: dict[str, Any]) -> int:
    value = obj["frame"]
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_FRAME_INDEX:
        raise BadLine("bad_frame")
    return value


def parse_frame(obj: dict[str, Any]) -> FrameRecord:
    """A `frame` line's object as a record; BadLine(reason) when anything is off."""
    if obj.keys() != _FRAME_KEYS:
        raise BadLine("bad_keys")
    outcome = obj["outcome"]
    if outcome not in OUTCOMES:
        raise BadLine("bad_outcome")
    record = FrameRecord(
        frame=_frame_index(obj),
        t_s=_number(obj, "t_s", 0.0, MAX_TIME_S),
        true_x=_number(obj, "true_x", -MAX_COORDINATE, MAX_COORDINATE),
        true_y=_number(obj, "true_y", -MAX_COORDINATE, MAX_COORDINATE),
        x=_optional(obj, "x", -MAX_COORDINATE, MAX_COORDINATE),
        y=_optional(obj, "y", -MAX_COORDINATE, MAX_COORDINATE),
        error_px=_optional(obj, "error_px", 0.0, 2 * MAX_COORDINATE),
        latency_ms=_optional(obj, "latency_ms", 0.0, MAX_LATENCY_MS),
        outcome=outcome,
    )
    measured = (record.x, record.y, record.error_px, record.latency_ms)
    if (outcome == MATCHED) != all(v is not None for v in measured) or (
        outcome != MATCHED and any(v is not None for v in measured)
    ):
        raise BadLine("outcome_mismatch")
    return record


def parse_sample(obj: dict[str, Any]) -> Sample:
    """A `sample` line's object; BadLine(reason) unless it holds a bounded PNG."""
    if obj.keys() != _SAMPLE_KEYS:
        raise BadLine("bad_keys")
    encoded = obj["png"]
    if not isinstance(encoded, str) or len(encoded) > 4 * MAX_SAMPLE_PNG_BYTES // 3 + 4:
        raise BadLine("bad_png")
    try:
        png = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise BadLine("bad_png") from None
    if not png.startswith(_PNG_MAGIC):
        raise BadLine("bad_png")
    return Sample(
        frame=_frame_index(obj),
        x0=_number(obj, "x0", -MAX_COORDINATE, MAX_COORDINATE),
        y0=_number(obj, "y0", -MAX_COORDINATE, MAX_COORDINATE),
        scale=_number(obj, "scale", 1e-3, 1e3),
        png=png,
    )


def parse_session(obj: dict[str, Any]) -> tuple[SessionSpec, int, int | None]:
    """A `session` line: the spec, the stride and the frames before downsampling."""
    if not obj.keys() <= {"type", "format", "spec", "downsampled"} or obj.get("format") != FORMAT:
        raise BadLine("bad_session")
    try:
        spec = SessionSpec.model_validate(obj.get("spec"))
    except ValidationError:
        raise BadLine("bad_session") from None
    down = obj.get("downsampled")
    if down is None:
        return spec, 1, None
    if not isinstance(down, dict) or down.keys() != {"stride", "frames_total"}:
        raise BadLine("bad_session")
    stride, total = down["stride"], down["frames_total"]
    for value in (stride, total):
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 1 << 31:
            raise BadLine("bad_session")
    return spec, stride, total


def _summary_value(value: Any, depth: int = 0) -> bool:
    if value is None or isinstance(value, bool | str):
        return not isinstance(value, str) or len(value) <= 256
    if isinstance(value, int):
        return abs(value) <= 2**53
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, dict) and depth < 2 and len(value) <= 64:
        return all(_summary_value(v, depth + 1) for v in value.values())
    return False


def parse_summary(obj: dict[str, Any]) -> dict[str, Any]:
    """A `summary` line: a flat-ish object holding at least every SUMMARY_KEYS entry."""
    summary = obj.get("summary")
    if obj.keys() != {"type", "summary"} or not isinstance(summary, dict):
        raise BadLine("bad_summary")
    if not all(key in summary for key in SUMMARY_KEYS) or not _summary_value(summary):
        raise BadLine("bad_summary")
    for key in SUMMARY_KEYS:
        value = summary[key]
        if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
            raise BadLine("bad_summary")
    return summary


def read_series(
    lines: Iterable[str | bytes],
    *,
    max_bytes: int = 2 << 30,
    max_frames: int = DEFAULT_MAX_FRAMES,
) -> Series:
    """Read series lines (text or bytes, newline optional) from an untrusted source.

    Stops (`truncated`) after `max_bytes` or `max_frames`; counts and skips every bad line;
    a later `frame` line for the same frame replaces the earlier one. Never raises on content.
    Frames come back sorted by index.
    """
    series = Series()
    by_index: dict[int, FrameRecord] = {}
    seen = 0
    for number, raw in enumerate(lines):
        size = len(raw)
        seen += size
        if seen > max_bytes or len(by_index) > max_frames:
            series.truncated = True
            break
        if size > MAX_LINE_BYTES:
            series.bad_lines["too_long"] += 1
            continue
        try:
            text = raw.decode("utf-8") if isinstance(raw, bytes) else raw
        except UnicodeDecodeError:
            series.bad_lines["not_utf8"] += 1
            continue
        if not text.strip():
            continue
        try:
            obj = _loads(text)
            kind = obj.get("type")
            if kind == "frame":
                record = parse_frame(obj)
                by_index[record.frame] = record
            elif kind == "sample":
                if len(series.samples) >= MAX_SAMPLES:
                    raise BadLine("too_many_samples")
                series.samples.append(parse_sample(obj))
            elif kind == "session":
                header = parse_session(obj)
                if number != 0:
                    raise BadLine("session_not_first")
                series.spec, series.stride, series.frames_total = header
            elif kind == "summary":
                series.summary = parse_summary(obj)
            else:
                raise BadLine("unknown_type")
        except BadLine as exc:
            series.bad_lines[str(exc)] += 1
    series.frames = [by_index[i] for i in sorted(by_index)]
    return series


def read_series_text(text: str, **bounds: int) -> Series:
    """`read_series` over one string (e.g. a ConfigMap value)."""
    return read_series(text.splitlines(), **bounds)


# ---- downsampling ----------------------------------------------------------------------


def _encoded_size(lines: Iterable[str]) -> int:
    return sum(len(line.encode("utf-8")) + 1 for line in lines)


def downsample(series: Series, max_bytes: int = CONFIGMAP_BYTES) -> str:
    """The series as JSON Lines of at most `max_bytes` bytes (UTF-8, newline-terminated).

    Keeps the session line, the summary and, of the samples, every j-th (the smallest j that
    fits in a quarter of the bound); of the frames, every k-th (the smallest k that fits)
    plus the matched frame with the largest error, and records k in the session line.
    ValueError when the series has no session line or `max_bytes` cannot hold the session
    and summary lines.
    """
    if series.spec is None:
        raise ValueError("a series without its session line cannot be downsampled")
    frames = series.frames
    total = series.frames_total if series.frames_total is not None else len(frames)
    tail = [summary_line(series.summary)] if series.summary is not None else []
    longest_head = session_line(series.spec, 1 << 31, 1 << 31)
    budget = max_bytes - _encoded_size([longest_head, *tail])
    if budget < 0:
        raise ValueError(f"{max_bytes} bytes cannot hold a series' session and summary lines")
    every = [sample_line(sample) for sample in series.samples]
    room = min(max_bytes // 4, budget)
    step = 1
    while _encoded_size(every[::step]) > room:
        step += 1
    samples = [line for line in every[::step] if len(line) + 1 <= room]
    while _encoded_size(samples) > room:
        samples.pop()
    budget -= _encoded_size(samples)
    lines = [frame_line(record) for record in frames]
    sizes = [len(line) + 1 for line in lines]
    matched = [i for i, record in enumerate(frames) if record.error_px is not None]
    worst = {max(matched, key=lambda i: frames[i].error_px or 0.0)} if matched else set()
    stride = max(1, math.ceil(sum(sizes) / max(budget, 1)))
    while True:
        keep = sorted(set(range(0, len(frames), stride)) | worst)
        if sum(sizes[i] for i in keep) <= budget:
            break
        if stride > len(frames):
            keep = []
            break
        stride = max(stride + 1, math.ceil(stride * 1.05))
    stride *= series.stride
    head = session_line(series.spec, stride, total) if stride > 1 else session_line(series.spec)
    text = "\n".join([head, *samples, *(lines[i] for i in keep), *tail]) + "\n"
    assert len(text.encode("utf-8")) <= max_bytes
    return text
