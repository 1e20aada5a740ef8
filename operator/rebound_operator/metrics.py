"""The server's metrics and summary as the operator reads them: untrusted text in, a
validated dict of SUMMARY_KEYS plus, when present, LINK_SUMMARY_KEYS (codec, bitrate, frames
the link spoilt, the ICE candidate pair, RTT and loss), or the reason it was refused, out.
Pure.

A value is size-checked before it is parsed, parsed without letting any exception out,
and checked for plausibility (types, ranges, finite numbers, matched <= sent, ...); the
link keys by the peers' own strict model (`peers.config.LinkSummary`); other keys are
ignored.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from peers.config import LINK_SUMMARY_KEYS, SUMMARY_KEYS, LinkSummary
from rebound_operator.text import one_line

MAX_METRICS_TEXT = 4096
"""Characters of a `metrics`/`summary` value the operator parses (a real one is ~300)."""
MAX_COUNT = 2**53 - 1
"""Largest frame counter accepted: every JSON reader holds it exactly, and it fits int64."""
FLOAT_RANGES: dict[str, float] = {
    "mean_error_px": 1e6,
    "p95_error_px": 1e6,
    "max_error_px": 1e6,
    "achieved_fps": 1e4,
    "latency_ms_p50": 8.64e7,
    "latency_ms_p95": 8.64e7,
}
"""Upper bounds (inclusive, all >= 0) of the summary's non-integer values."""
REQUIRED_COUNTS = ("frames_sent", "coordinates_received", "frames_matched")
OPTIONAL_COUNTS = ("frames_dropped_by_client",)
ORDER_TOLERANCE = 1e-3
"""Slack for rounded statistics (mean <= max, p95 <= max, p50 <= p95)."""


# ---- metrics --------------------------------------------------------------------------


def _count_problem(key: str, value: Any, required: bool) -> str | None:
    if value is None:
        return f"{key} is missing" if required else None
    if isinstance(value, bool) or not isinstance(value, int):
        return f"{key} is not an integer"
    if not 0 <= value <= MAX_COUNT:
        return f"{key} is out of range (0..{MAX_COUNT})"
    return None


def _float_problem(key: str, value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        return f"{key} is not a number"
    high = FLOAT_RANGES[key]
    # Range-check integers before float(): a 400-digit integer must not overflow.
    if isinstance(value, int) and not 0 <= value <= high:
        return f"{key} is out of range (0..{high:g})"
    if not math.isfinite(value):
        return f"{key} is not finite"
    if not 0 <= value <= high:
        return f"{key} is out of range (0..{high:g})"
    return None


def _implausible(values: Mapping[str, Any]) -> str | None:
    """Why a summary with exactly SUMMARY_KEYS cannot be true, or None."""
    for key in REQUIRED_COUNTS:
        problem = _count_problem(key, values[key], required=True)
        if problem:
            return problem
    for key in OPTIONAL_COUNTS:
        problem = _count_problem(key, values[key], required=False)
        if problem:
            return problem
    for key in FLOAT_RANGES:
        problem = _float_problem(key, values[key])
        if problem:
            return problem
    sent, received, matched = (values[k] for k in REQUIRED_COUNTS)
    if matched > sent:
        return f"frames_matched {matched} exceeds frames_sent {sent}"
    if matched > received:
        return f"frames_matched {matched} exceeds coordinates_received {received}"
    mean = values["mean_error_px"]
    if matched and mean is None:
        return f"mean_error_px is null although {matched} frames matched"
    if not matched and mean is not None:
        return "mean_error_px is set although no frame matched"
    for low, high in (
        ("mean_error_px", "max_error_px"),
        ("p95_error_px", "max_error_px"),
        ("latency_ms_p50", "latency_ms_p95"),
    ):
        a, b = values[low], values[high]
        if a is not None and b is not None and a > b + ORDER_TOLERANCE:
            return f"{low} {a:g} exceeds {high} {b:g}"
    return None


def check_metrics(text: str | None) -> tuple[dict[str, Any] | None, str | None]:
    """Parse the server's summary JSON: (dict of SUMMARY_KEYS, plus LINK_SUMMARY_KEYS when
    the summary has them, None) or (None, why not).

    Absent or empty text is (None, None): nothing published yet is not a problem. Other
    keys are ignored. Never raises, whatever the text.
    """
    if not text:
        return None, None
    if not isinstance(text, str):
        return None, "not a string"
    if len(text) > MAX_METRICS_TEXT:
        return None, f"too large ({len(text)} characters; at most {MAX_METRICS_TEXT})"
    try:
        raw = json.loads(text)
    except (ValueError, RecursionError) as exc:
        why = getattr(exc, "msg", None) or type(exc).__name__
        return None, f"not JSON ({one_line(why, 64)})"
    if not isinstance(raw, dict):
        return None, f"not a JSON object but {type(raw).__name__}"
    missing = [key for key in SUMMARY_KEYS if key not in raw]
    if missing:
        return None, f"missing {', '.join(missing)}"
    values = {key: raw[key] for key in SUMMARY_KEYS}
    problem = _implausible(values)
    if problem:
        return None, problem
    link, problem = _link(raw, values)
    if problem:
        return None, problem
    return {**values, **link}, None


def _link(raw: Mapping[str, Any], values: Mapping[str, Any]) -> tuple[dict[str, Any], str | None]:
    """The media and path keys (LINK_SUMMARY_KEYS), checked by the peers' own model
    (`LinkSummary`: strict types, bounds); none at all (an older peer) is no problem."""
    if not any(key in raw for key in LINK_SUMMARY_KEYS):
        return {}, None
    try:
        link = LinkSummary.model_validate({k: raw[k] for k in LINK_SUMMARY_KEYS if k in raw})
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "link keys"
        return {}, f"{where}: {one_line(first['msg'], 96)}"
    result = link.model_dump(mode="json")
    sent = values["frames_sent"]
    for key in ("frames_unreadable", "frames_incomplete"):
        if result[key] is not None and result[key] > sent:
            return {}, f"{key} {result[key]} exceeds frames_sent {sent}"
    return result, None


def parse_metrics(text: str | None) -> dict[str, Any] | None:
    """The peers' summary JSON as a dict of exactly SUMMARY_KEYS; None if absent or malformed."""
    return check_metrics(text)[0]


@dataclass(frozen=True)
class MetricsReading:
    """What the server's ConfigMap says about the measurement."""

    final: dict[str, Any] | None
    """The server's final `summary`, if present and well-formed."""
    live: dict[str, Any] | None
    """The best available numbers: the summary, else the live `metrics`."""
    problem: str | None
    """Why a present value was ignored, e.g. `data.summary: not JSON (...)`."""
    summary_problem: str | None = None
    """Why a present `summary` was ignored (it fails a completed session)."""


def read_metrics(summary: str | None, metrics: str | None) -> MetricsReading:
    """The server's `summary` and live `metrics` values; malformed values never raise."""
    final, summary_problem = check_metrics(summary)
    live, live_problem = check_metrics(metrics)
    if summary_problem:
        problem: str | None = f"data.summary: {summary_problem}"
    elif live_problem and final is None:
        problem = f"data.metrics: {live_problem}"
    else:
        problem = None
    return MetricsReading(
        final=final,
        live=final or live,
        problem=problem,
        summary_problem=f"data.summary: {summary_problem}" if summary_problem else None,
    )
