"""A session report: one self-contained HTML file (plots and frames inline) from a series.

python -m peers.report SERIES.jsonl -o REPORT.html

The server's `--report PATH.html` renders the same from the series it has just written. The
plots are matplotlib's (Agg backend, PNG inline as data: URIs; no script, no network): the
error over time, the error histogram with its mean and p95, the latency over time, the
frames by outcome over time, and a strip of frames zoomed on the ball with the truth (green
circle) and the client's detection (red cross). The strip shows crops of frames as the client
received them when the series carries samples, else the frames as sent (re-rendered from the
session parameters, which is exactly what the server encoded). matplotlib is the `report`
extra (`pip install 'rebound[report]'`); the peer image does without it.
"""

from __future__ import annotations

import argparse
import base64
import html
import io
import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

from peers import series as series_mod
from peers.ball import BallModel
from peers.config import SUMMARY_KEYS
from peers.render import draw
from peers.series import FrameRecord, Sample, Series

PROG = "python -m peers.report"
STRIP_FRAMES = 8
MAX_SERIES_BYTES = 1 << 30
OUTCOME_COLOURS = {
    series_mod.MATCHED: "#2e7d32",
    series_mod.DROPPED: "#f9a825",
    series_mod.UNREADABLE: "#6a1b9a",
    series_mod.NO_BALL: "#1565c0",
    series_mod.LOST: "#c62828",
}
TRUTH_COLOUR = "#00c853"
DETECTION_COLOUR = "#ff1744"


class ReportError(Exception):
    """The input cannot make a report (the message is one line for the user)."""


def matplotlib_missing() -> str | None:
    """None when matplotlib can be imported, else a one-line hint for the user."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return "matplotlib is not installed (pip install 'rebound[report]')"
    return None


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _png(fig: Any) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    _pyplot().close(fig)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


@dataclass(frozen=True)
class Columns:
    """The series' frames as arrays (NaN where not measured)."""

    t: npt.NDArray[np.float64]
    error: npt.NDArray[np.float64]
    latency: npt.NDArray[np.float64]
    outcome: list[str]

    @classmethod
    def of(cls, frames: Sequence[FrameRecord]) -> Columns:
        """Columns of `frames`."""

        def col(values: list[float | None]) -> npt.NDArray[np.float64]:
            return np.array([math.nan if v is None else v for v in values], dtype=np.float64)

        return cls(
            t=col([f.t_s for f in frames]),
            error=col([f.error_px for f in frames]),
            latency=col([f.latency_ms for f in frames]),
            outcome=[f.outcome for f in frames],
        )


def _time_axis(ax: Any) -> None:
    ax.set_xlabel("time since the first frame (s)")
    ax.grid(True, alpha=0.3)


def error_over_time(cols: Columns) -> str:
    """PNG (base64) of the error of every matched frame against time."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(10, 3.2))
    ok = ~np.isnan(cols.error)
    ax.plot(cols.t[ok], cols.error[ok], ".", markersize=2.5, color=OUTCOME_COLOURS["matched"])
    ax.set_ylabel("error (px)")
    ax.set_ylim(bottom=0)
    ax.set_title("Error of each matched frame")
    _time_axis(ax)
    return _png(fig)


def error_histogram(cols: Columns) -> str:
    """PNG (base64) of the error distribution with its mean and p95 marked."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(10, 3.2))
    errors = cols.error[~np.isnan(cols.error)]
    if errors.size:
        mean, p95 = float(errors.mean()), float(np.percentile(errors, 95))
        ax.hist(errors, bins=min(60, max(10, errors.size // 10)), color="#90a4ae")
        ax.axvline(mean, color="#1565c0", linewidth=2, label=f"mean {mean:.4f} px")
        ax.axvline(p95, color="#e65100", linewidth=2, linestyle="--", label=f"p95 {p95:.4f} px")
        ax.legend()
    else:
        ax.text(0.5, 0.5, "no matched frame", ha="center", va="center", transform=ax.transAxes)
    ax.set_xlabel("error (px)")
    ax.set_ylabel("frames")
    ax.set_title("Error histogram")
    ax.grid(True, alpha=0.3)
    return _png(fig)


def latency_over_time(cols: Columns) -> str:
    """PNG (base64) of each matched frame's latency against time."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(10, 3.2))
    ok = ~np.isnan(cols.latency)
    ax.plot(cols.t[ok], cols.latency[ok], ".", markersize=2.5, color="#5d4037")
    ax.set_ylabel("latency (ms)")
    ax.set_ylim(bottom=0)
    ax.set_title("Latency: frame sent → its coordinate back")
    _time_axis(ax)
    return _png(fig)


def outcomes_over_time(cols: Columns, stride: int) -> str:
    """PNG (base64) of frames per time bin by outcome (stacked)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(10, 3.2))
    span = float(np.nanmax(cols.t)) if cols.t.size else 0.0
    width = max(1.0, math.ceil(span / 120)) if span > 0 else 1.0
    edges = np.arange(0.0, span + width, width)
    if edges.size < 2:
        edges = np.array([0.0, width])
    bottom = np.zeros(edges.size - 1)
    outcome = np.array(cols.outcome)
    for name, colour in OUTCOME_COLOURS.items():
        counts, _ = np.histogram(cols.t[outcome == name], bins=edges)
        if counts.any():
            ax.bar(edges[:-1], counts * stride, width, bottom=bottom, align="edge",
                   color=colour, label=name)  # fmt: skip
            bottom += counts * stride
    ax.set_ylabel(f"frames per {width:g} s")
    ax.set_title("Frames by outcome" + (f" (every {stride}th frame, scaled)" if stride > 1 else ""))
    if bottom.any():
        ax.legend(loc="lower right", ncols=5, fontsize="small")
    _time_axis(ax)
    return _png(fig)


@dataclass(frozen=True)
class StripFrame:
    """One frame of the strip: grey pixels placed in frame coordinates, and its record."""

    pixels: npt.NDArray[np.uint8]
    x0: float
    y0: float
    scale: float
    record: FrameRecord | None
    received: bool


def _decode_png(png: bytes) -> npt.NDArray[np.uint8] | None:
    image = cv2.imdecode(np.frombuffer(png, dtype=np.uint8), cv2.IMREAD_GRAYSCALE)
    return None if image is None or image.size == 0 else np.asarray(image, dtype=np.uint8)


def _pick(count: int, wanted: int) -> list[int]:
    if count <= wanted:
        return list(range(count))
    return sorted({round(i * (count - 1) / (wanted - 1)) for i in range(wanted)})


def strip_frames(series: Series, wanted: int = STRIP_FRAMES) -> list[StripFrame]:
    """Received samples when the series has them, else frames as sent (worst one included)."""
    by_index = {r.frame: r for r in series.frames}
    strip = []
    samples: list[Sample] = series.samples
    for i in _pick(len(samples), wanted):
        sample = samples[i]
        pixels = _decode_png(sample.png)
        if pixels is not None:
            strip.append(
                StripFrame(
                    pixels,
                    sample.x0,
                    sample.y0,
                    sample.scale,
                    by_index.get(sample.frame),
                    received=True,
                )
            )
    if strip or series.spec is None or not series.frames:
        return strip
    spec = series.spec
    model = BallModel(spec.width, spec.height, spec.radius, spec.speed, spec.fps, seed=spec.seed)
    chosen = [series.frames[i] for i in _pick(len(series.frames), wanted - 1)]
    matched = [r for r in series.frames if r.error_px is not None]
    if matched:
        worst = max(matched, key=lambda r: r.error_px or 0.0)
        if worst not in chosen:
            chosen.append(worst)
    half = max(24, math.ceil(spec.radius * 1.6))
    for record in sorted(chosen, key=lambda r: r.frame):
        bgr = draw(model.position(record.frame), spec.radius, spec.width, spec.height,
                   frame_index=record.frame)  # fmt: skip
        cx, cy = round(record.true_x), round(record.true_y)
        x0, y0 = max(0, cx - half), max(0, cy - half)
        crop = cv2.cvtColor(bgr[y0 : cy + half + 1, x0 : cx + half + 1], cv2.COLOR_BGR2GRAY)
        strip.append(StripFrame(np.asarray(crop), x0, y0, 1.0, record, received=False))
    return strip


def frame_strip(strip: list[StripFrame], radius: float | None) -> str:
    """PNG (base64) of the strip: each frame zoomed, truth circle and detection cross drawn."""
    plt = _pyplot()
    from matplotlib.patches import Circle

    fig, axes = plt.subplots(1, len(strip), figsize=(2.3 * len(strip), 2.9), squeeze=False)
    for ax, item in zip(axes[0], strip, strict=True):
        h, w = item.pixels.shape
        s = item.scale
        extent = (item.x0 - 0.5 * s, item.x0 + (w - 0.5) * s, item.y0 + (h - 0.5) * s,
                  item.y0 - 0.5 * s)  # fmt: skip
        ax.imshow(item.pixels, cmap="gray", vmin=0, vmax=255, extent=extent,
                  interpolation="nearest")  # fmt: skip
        record = item.record
        label = "no record"
        if record is not None:
            if radius is not None:
                ax.add_patch(Circle((record.true_x, record.true_y), radius, fill=False,
                                    edgecolor=TRUTH_COLOUR, linewidth=1.5))  # fmt: skip
            ax.plot([record.true_x], [record.true_y], "+", color=TRUTH_COLOUR, markersize=6)
            if record.x is not None and record.y is not None:
                ax.plot([record.x], [record.y], "x", color=DETECTION_COLOUR, markersize=12,
                        markeredgewidth=2)  # fmt: skip
                label = f"frame {record.frame}\nerror {record.error_px:.3f} px"
            else:
                label = f"frame {record.frame}\n{record.outcome}"
        ax.set_title(label, fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(
        "Frames as the client received them" if strip[0].received
        else "Frames as sent (re-rendered from the session parameters)",
        fontsize=10,
    )  # fmt: skip
    return _png(fig)


def _cell(value: Any) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.4g}"
    return html.escape(str(value))


def _table(rows: list[tuple[str, Any]]) -> str:
    body = "".join(f"<tr><th>{html.escape(k)}</th><td>{_cell(v)}</td></tr>" for k, v in rows)
    return f"<table>{body}</table>"


CSS = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #212121; }
h1 { font-size: 1.5em; } h2 { font-size: 1.15em; margin-top: 1.6em; }
table { border-collapse: collapse; margin: 0.5em 0; font-size: 0.92em; }
th, td { border: 1px solid #ddd; padding: 0.25em 0.7em; text-align: left; }
th { background: #f5f5f5; font-weight: 600; }
img { max-width: 100%; display: block; margin: 0.4em 0; }
.note { color: #616161; font-size: 0.9em; }
.grid { display: flex; gap: 2em; flex-wrap: wrap; }
"""


def render_html(series: Series, title: str = "Rebound session report") -> str:
    """The whole report for `series` as one HTML document (nothing loaded from elsewhere)."""
    if not series.frames:
        raise ReportError("the series holds no valid frame line")
    cols = Columns.of(series.frames)
    spec = series.spec
    summary = series.summary or {}
    counts = {name: cols.outcome.count(name) for name in series_mod.OUTCOMES}
    notes = []
    if series.stride > 1:
        notes.append(
            f"Downsampled: every {series.stride}th frame of {series.frames_total} plus the "
            "worst; the summary's numbers are exact, the plots show the frames kept."
        )
    if series.bad_lines:
        bad = ", ".join(f"{k} {v}" for k, v in sorted(series.bad_lines.items()))
        notes.append(f"Lines ignored while reading the series: {bad}.")
    if series.truncated:
        notes.append("The series was cut at the reader's bound; later lines are not shown.")
    session_rows = [] if spec is None else list(spec.model_dump().items())
    summary_rows = [(k, summary[k]) for k in SUMMARY_KEYS if k in summary]
    summary_rows += [  # what else the server measured (codec, bitrate, path, ...)
        (k, v) for k, v in summary.items() if k not in SUMMARY_KEYS and not isinstance(v, dict)
    ]
    client = summary.get("client")
    if isinstance(client, dict):
        summary_rows += [(f"client {k}", v) for k, v in client.items()]
    outcome_rows = [(name, count * series.stride) for name, count in counts.items()]
    strip = strip_frames(series)
    sections = [
        f"<h1>{html.escape(title)}</h1>",
        *(f'<p class="note">{html.escape(n)}</p>' for n in notes),
        '<div class="grid">',
        f"<div><h2>Summary</h2>{_table(summary_rows) if summary_rows else '<p>none</p>'}</div>",
        f"<div><h2>Session</h2>{_table(session_rows) if session_rows else '<p>unknown</p>'}</div>",
        f"<div><h2>Frames by outcome</h2>{_table(outcome_rows)}</div>",
        "</div>",
        "<h2>Error over time</h2>",
        f'<img alt="error over time" src="data:image/png;base64,{error_over_time(cols)}">',
        "<h2>Error histogram</h2>",
        f'<img alt="error histogram" src="data:image/png;base64,{error_histogram(cols)}">',
        "<h2>Latency over time</h2>",
        f'<img alt="latency over time" src="data:image/png;base64,{latency_over_time(cols)}">',
        "<h2>Matched and dropped over time</h2>",
        f'<img alt="frames by outcome" '
        f'src="data:image/png;base64,{outcomes_over_time(cols, series.stride)}">',
    ]
    if strip:
        radius = None if spec is None else spec.radius
        alt = "frames as the client received them" if strip[0].received else "frames as sent"
        sections += [
            "<h2>Frames</h2>",
            f'<img alt="{alt}" src="data:image/png;base64,{frame_strip(strip, radius)}">',
            '<p class="note">Green circle: the true ball; red cross: the client\'s detection.</p>',
        ]
    body = "\n".join(sections)
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title><style>{CSS}</style></head>\n"
        f"<body>\n{body}\n</body></html>\n"
    )


def read_series_file(path: Path) -> Series:
    """Read a series file as untrusted input; ReportError when it cannot be opened."""
    try:
        with path.open("rb") as stream:
            return series_mod.read_series(stream, max_bytes=MAX_SERIES_BYTES)
    except OSError as exc:
        raise ReportError(f"cannot read {path}: {exc.strerror or exc}") from None


def write_report(series: Series, out: Path, title: str = "Rebound session report") -> None:
    """Render `series` and write the HTML to `out`; ReportError on failure."""
    text = render_html(series, title)
    try:
        out.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise ReportError(f"cannot write {out}: {exc.strerror or exc}") from None


def main(argv: list[str] | None = None) -> int:
    """`python -m peers.report SERIES.jsonl -o REPORT.html`."""
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0])
    parser.add_argument("series", type=Path, help="a series written by --series (JSON Lines)")
    parser.add_argument("-o", "--output", type=Path, required=True, help="the HTML file to write")
    parser.add_argument("--title", default="Rebound session report", help="the page's title")
    args = parser.parse_args(argv)
    missing = matplotlib_missing()
    if missing:
        print(f"{PROG}: error: {missing}", file=sys.stderr)
        return 2
    try:
        series = read_series_file(args.series)
        write_report(series, args.output, args.title)
    except ReportError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    if series.bad_lines:
        bad = ", ".join(f"{k} {v}" for k, v in sorted(series.bad_lines.items()))
        print(f"{PROG}: ignored lines: {bad}", file=sys.stderr)
    print(f"wrote {args.output} ({len(series.frames)} frames)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
