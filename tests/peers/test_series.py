"""The per-frame series format: lines out, strict reading back, downsampling to a byte bound."""

from __future__ import annotations

import base64
import itertools
import json
import random

import cv2
import numpy as np
import pytest

from peers import series
from peers.config import SUMMARY_KEYS, SessionSpec
from peers.series import FrameRecord, Sample

SPEC = SessionSpec(frames=300)
SUMMARY = {key: 0 for key in SUMMARY_KEYS} | {"mean_error_px": 0.02, "session": {"fps": 30}}


def record(i: int, outcome: str = series.MATCHED, error: float = 0.02) -> FrameRecord:
    matched = outcome == series.MATCHED
    return FrameRecord(
        frame=i,
        t_s=i / 16,
        true_x=100.0 + i,
        true_y=200.0 - i / 8,
        x=100.0 + i + error if matched else None,
        y=200.0 - i / 8 if matched else None,
        error_px=error if matched else None,
        latency_ms=38.25 if matched else None,
        outcome=outcome,
    )


def png_bytes() -> bytes:
    ok, png = cv2.imencode(".png", np.full((24, 24), 128, dtype=np.uint8))
    assert ok
    return bytes(png)


def full_series(frames: int = 300) -> list[str]:
    outcomes = [series.MATCHED] * 7 + [series.DROPPED, series.NO_BALL, series.LOST]
    lines = [series.session_line(SPEC)]
    lines += [series.frame_line(record(i, outcomes[i % 10])) for i in range(frames)]
    lines.append(series.sample_line(Sample(5, 80.0, 180.0, 2.0, png_bytes())))
    lines.append(series.summary_line(SUMMARY))
    return lines


def test_lines_round_trip() -> None:
    read = series.read_series(full_series())
    assert read.bad_lines == {}
    assert read.spec == SPEC
    assert read.stride == 1 and read.frames_total is None
    assert [r.frame for r in read.frames] == list(range(300))
    assert read.frames[3] == record(3)
    assert read.frames[7].outcome == series.DROPPED and read.frames[7].x is None
    assert read.samples[0].png == png_bytes() and read.samples[0].scale == 2.0
    assert read.summary == SUMMARY


def test_a_frame_line_is_one_compact_object_with_nulls() -> None:
    line = series.frame_line(record(9, series.LOST))
    assert "\n" not in line and " " not in line
    assert json.loads(line) == {
        "type": "frame",
        "frame": 9,
        "t_s": 0.5625,
        "true_x": 109.0,
        "true_y": 198.875,
        "x": None,
        "y": None,
        "error_px": None,
        "latency_ms": None,
        "outcome": "lost",
    }


def test_a_later_line_for_the_same_frame_wins() -> None:
    lines = [series.frame_line(record(4, series.LOST)), series.frame_line(record(4))]
    assert series.read_series(lines).frames == [record(4)]


def good_frame() -> dict[str, object]:
    return dict(json.loads(series.frame_line(record(1))))


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("not json", "not_json"),
        ("[1, 2]", "not_an_object"),
        ('{"type": "frame", "type": "frame"}', "duplicate_key"),
        (json.dumps(good_frame() | {"x": float("nan")}, allow_nan=True), "not_finite"),
        (json.dumps(good_frame() | {"error_px": float("inf")}, allow_nan=True), "not_finite"),
        (json.dumps(good_frame() | {"frame": -1}), "bad_frame"),
        (json.dumps(good_frame() | {"frame": 1 << 24}), "bad_frame"),
        (json.dumps(good_frame() | {"frame": True}), "bad_frame"),
        (json.dumps(good_frame() | {"frame": 1.5}), "bad_frame"),
        (json.dumps(good_frame() | {"x": 10**400}), "bad_x"),
        (json.dumps(good_frame() | {"x": "12"}), "bad_x"),
        (json.dumps(good_frame() | {"latency_ms": -1}), "bad_latency_ms"),
        (json.dumps(good_frame() | {"error_px": -0.5}), "bad_error_px"),
        (json.dumps(good_frame() | {"outcome": "teleported"}), "bad_outcome"),
        (json.dumps(good_frame() | {"outcome": "lost"}), "outcome_mismatch"),
        (json.dumps(good_frame() | {"x": None}), "outcome_mismatch"),
        (json.dumps(good_frame() | {"extra": 1}), "bad_keys"),
        (json.dumps({"type": "weather"}), "unknown_type"),
        (json.dumps({"type": "session", "format": "other/9", "spec": {}}), "bad_session"),
        (json.dumps({"type": "summary", "summary": {"frames_sent": 1}}), "bad_summary"),
        (json.dumps({"type": "sample", "frame": 1, "x0": 0, "y0": 0, "scale": 1, "png": "!"}),
         "bad_png"),
        (json.dumps({"type": "sample", "frame": 1, "x0": 0, "y0": 0, "scale": 1,
                     "png": base64.b64encode(b"GIF89a").decode()}), "bad_png"),
        ("x" * (series.MAX_LINE_BYTES + 1), "too_long"),
        (b"\xff\xfe{}", "not_utf8"),
    ],
)  # fmt: skip
def test_bad_lines_are_counted_by_reason_and_skipped(line: str | bytes, reason: str) -> None:
    lines = full_series(20)
    lines.insert(3, line)  # type: ignore[arg-type]
    read = series.read_series(lines)
    assert read.bad_lines == {reason: 1}
    assert len(read.frames) == 20 and read.summary == SUMMARY


def test_a_session_line_must_come_first() -> None:
    lines = full_series(3)
    read = series.read_series([lines[1], lines[0]])
    assert read.spec is None and read.bad_lines == {"session_not_first": 1}


def test_reading_stops_at_its_bounds() -> None:
    lines = full_series(100)
    assert series.read_series(lines, max_frames=10).truncated
    assert len(series.read_series(lines, max_frames=10).frames) == 11
    by_bytes = series.read_series(lines, max_bytes=2000)
    assert by_bytes.truncated and len(by_bytes.frames) < 20


def test_random_garbage_never_raises() -> None:
    rng = random.Random(7)
    good = full_series(10)
    for _ in range(300):
        line = bytearray(rng.choice(good).encode())
        for _ in range(rng.randint(1, 6)):
            line[rng.randrange(len(line))] = rng.randrange(256)
        series.read_series([bytes(line)])


def test_downsampling_keeps_everything_when_it_fits() -> None:
    read = series.read_series(full_series(300))
    text = series.downsample(read, 200_000)
    again = series.read_series_text(text)
    assert again.stride == 1 and again.frames == read.frames
    assert again.samples == read.samples and again.summary == SUMMARY


@pytest.mark.parametrize("bound", [20_000, 60_000, 200_000])
def test_downsampling_meets_the_byte_bound_with_every_kth_frame_and_the_worst(bound: int) -> None:
    lines = full_series(18_000)  # 10 min at 30 fps: ~2.7 MB
    lines.insert(5000, series.frame_line(record(4321, error=3.5)))
    read = series.read_series(lines)
    text = series.downsample(read, bound)
    assert len(text.encode()) <= bound
    small = series.read_series_text(text)
    assert small.bad_lines == {}
    assert small.stride > 1 and small.frames_total == 18_000
    kept = [r.frame for r in small.frames]
    assert 4321 in kept  # the worst frame survives
    regular = [f for f in kept if f != 4321]
    assert all(f % small.stride == 0 for f in regular)
    assert len(regular) == len(range(0, 18_000, small.stride))
    assert len(text.encode()) > bound * 0.6  # uses the room it has
    assert small.summary == SUMMARY and small.samples == read.samples
    twice = series.read_series_text(series.downsample(small, bound // 2))
    assert twice.frames_total == 18_000 and twice.stride >= small.stride


def test_downsampling_refuses_what_cannot_fit() -> None:
    read = series.read_series(full_series(10))
    with pytest.raises(ValueError, match="cannot hold"):
        series.downsample(read, 100)
    with pytest.raises(ValueError, match="session line"):
        series.downsample(series.Series(), 10_000)


def test_downsampling_keeps_samples_spread_over_the_session() -> None:
    noise = np.random.default_rng(0).integers(0, 256, 3000, dtype=np.uint8).tobytes()
    png = b"\x89PNG\r\n\x1a\n" + noise
    lines = full_series(100)[:-2]
    lines += [series.sample_line(Sample(i, 0, 0, 1.0, png)) for i in range(0, 40)]
    lines.append(series.summary_line(SUMMARY))
    read = series.read_series(lines)
    small = series.read_series_text(series.downsample(read, 60_000))
    kept = [s.frame for s in small.samples]
    assert 2 <= len(kept) < 40
    assert kept[0] == 0 and kept[-1] >= 20  # spread out, not the first few
    assert len({b - a for a, b in itertools.pairwise(kept)}) == 1
