"""The session report: every plot and frame inline, nothing loaded from the network."""

from __future__ import annotations

import asyncio
import base64
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import cv2
import numpy as np
import pytest
from machine_tools import require

from bench.browser import Chromium, find_chromium
from peers import report, series
from peers.ball import BallModel
from peers.config import SUMMARY_KEYS, SessionSpec
from peers.render import draw
from peers.series import FrameRecord, Sample

REPO = Path(__file__).resolve().parents[2]
SPEC = SessionSpec(width=320, height=240, radius=12, frames=120, seed=2)
MODEL = BallModel(320, 240, 12, 240, 30, seed=2)
OUTCOMES = [series.MATCHED] * 6 + [series.DROPPED, series.UNREADABLE, series.NO_BALL, series.LOST]


def hex_bgr(colour: str) -> tuple[int, int, int]:
    r, g, b = (int(colour[i : i + 2], 16) for i in (1, 3, 5))
    return b, g, r


def make_series(with_samples: bool) -> list[str]:
    rng = np.random.default_rng(1)
    lines = [series.session_line(SPEC)]
    for i in range(120):
        truth = MODEL.position(i)
        outcome = OUTCOMES[i % 10]
        matched = outcome == series.MATCHED
        error = float(abs(rng.normal(0, 0.05))) if matched else None
        x, y = (truth.x + (error or 0.0), truth.y) if matched else (None, None)
        latency = 38.0 + i % 5 if matched else None
        record = FrameRecord(i, i / 30, truth.x, truth.y, x, y, error, latency, outcome)
        lines.append(series.frame_line(record))
    if with_samples:
        for i in (0, 30, 60, 90):
            truth = MODEL.position(i)
            grey = cv2.cvtColor(draw(truth, 12, 320, 240, frame_index=i), cv2.COLOR_BGR2GRAY)
            x0, y0 = int(truth.x) - 24, int(truth.y) - 24
            _, png = cv2.imencode(".png", grey[y0 : y0 + 48, x0 : x0 + 48])
            lines.append(series.sample_line(Sample(i, x0, y0, 1.0, bytes(png))))
    summary = {key: 1 for key in SUMMARY_KEYS} | {"client": {"received": 120, "final": True}}
    lines.append(series.summary_line(summary))
    return lines


class Page(HTMLParser):
    """Every tag's attributes, and the text."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def images(html: str) -> dict[str, np.ndarray]:
    page = Page()
    page.feed(html)
    found = {}
    for tag, attrs in page.tags:
        assert tag not in ("script", "link", "iframe", "object")
        for name in ("src", "href"):
            value = attrs.get(name)
            assert value is None or value.startswith("data:image/png;base64,"), value
        if tag == "img":
            data = base64.b64decode((attrs["src"] or "").split(",", 1)[1])
            image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
            assert image is not None and image.shape[0] > 100 and image.shape[1] > 300
            found[attrs["alt"] or ""] = image
    return found


def has_colour(image: np.ndarray, colour: str, tolerance: int = 30, at_least: int = 20) -> bool:
    target = np.array(hex_bgr(colour), dtype=np.int16)
    close = np.abs(image.astype(np.int16) - target).max(axis=2) <= tolerance
    return int(close.sum()) >= at_least


def test_the_report_has_every_plot_inline_with_mean_p95_truth_and_detection() -> None:
    read = series.read_series(make_series(with_samples=True))
    html = report.render_html(read, "demo <session>")
    shown = images(html)
    assert set(shown) == {
        "error over time",
        "error histogram",
        "latency over time",
        "frames by outcome",
        "frames as the client received them",
    }
    assert "demo &lt;session&gt;" in html
    assert has_colour(shown["error histogram"], "#1565c0")  # the mean line
    assert has_colour(shown["error histogram"], "#e65100")  # the p95 line
    assert has_colour(shown["error over time"], report.OUTCOME_COLOURS["matched"])
    for outcome in series.OUTCOMES:
        assert has_colour(shown["frames by outcome"], report.OUTCOME_COLOURS[outcome])
    strip = shown["frames as the client received them"]
    assert has_colour(strip, report.TRUTH_COLOUR, at_least=200)
    assert has_colour(strip, report.DETECTION_COLOUR, at_least=50)
    assert has_colour(strip, "#ffffff", tolerance=10, at_least=2000)  # the ball itself


def test_without_samples_the_strip_shows_frames_as_sent() -> None:
    read = series.read_series(make_series(with_samples=False))
    shown = images(report.render_html(read))
    strip = shown["frames as sent"]
    assert has_colour(strip, report.TRUTH_COLOUR, at_least=200)
    assert has_colour(strip, report.DETECTION_COLOUR, at_least=50)


def test_a_downsampled_series_says_so() -> None:
    read = series.read_series_text(
        series.downsample(series.read_series(make_series(with_samples=True)), 12_000)
    )
    assert read.stride > 1
    html = report.render_html(read)
    assert f"every {read.stride}th frame of 120" in html


def test_the_command_line(tmp_path: Path) -> None:
    source = tmp_path / "s.jsonl"
    source.write_text("\n".join(make_series(with_samples=False)) + "\nnot json\n")
    out = tmp_path / "r.html"

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "peers.report", *args], cwd=REPO,
                              capture_output=True, text=True, timeout=120)  # fmt: skip

    done = run(str(source), "-o", str(out))
    assert done.returncode == 0, done.stderr
    assert "ignored lines: not_json 1" in done.stderr
    assert len(images(out.read_text())) == 5
    missing = run(str(tmp_path / "nope.jsonl"), "-o", str(out))
    assert missing.returncode == 2
    assert missing.stderr.strip().splitlines() == [
        f"python -m peers.report: error: cannot read {tmp_path / 'nope.jsonl'}: "
        "No such file or directory"
    ]
    (tmp_path / "junk").write_bytes(b"\x00\xff garbage\n{}\n")
    junk = run(str(tmp_path / "junk"), "-o", str(out))
    assert junk.returncode == 2 and "no valid frame line" in junk.stderr


def test_the_report_renders_offline_in_chromium(tmp_path: Path) -> None:
    require(None if find_chromium() else "chromium is not installed (make test-tools)")
    out = tmp_path / "r.html"
    report.write_report(series.read_series(make_series(with_samples=True)), out)

    async def look() -> tuple[bytes, list[int], list[str]]:
        async with Chromium(1200, 900) as browser:
            await browser.open(out.as_uri(), settle_s=1.0)
            widths = await browser.evaluate(
                "[...document.images].map(i => i.complete ? i.naturalWidth : -1)"
            )
            return await browser.screenshot(full_page=True), widths, browser.requests

    png, widths, requests = asyncio.run(look())
    assert len(widths) == 5 and min(widths) > 300
    assert requests and all(url.startswith(("file:", "data:")) for url in requests), requests
    shot = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR)
    assert shot.shape[0] > 1500  # the whole page, every plot drawn
    assert has_colour(shot, report.TRUTH_COLOUR, at_least=200)
    assert has_colour(shot, "#1565c0")


def test_without_matplotlib_report_is_refused_in_one_line(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib now fails
    assert report.main([str(tmp_path / "s.jsonl"), "-o", str(tmp_path / "r.html")]) == 2
    assert capsys.readouterr().err == (
        "python -m peers.report: error: matplotlib is not installed "
        "(pip install 'rebound[report]')\n"
    )
    from peers.outputs import report_unavailable

    assert report_unavailable() == (
        "--report needs matplotlib: matplotlib is not installed (pip install 'rebound[report]')"
    )
