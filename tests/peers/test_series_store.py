"""The bounded copy of the series a server stores in its ConfigMap: memory bounded however
long the session, evenly decimated, the worst frame kept, and a strictly valid series of at
most the ConfigMap bound at the end."""

from __future__ import annotations

from pathlib import Path

import pytest

from peers import series
from peers.config import SUMMARY_KEYS, SessionSpec
from peers.series_store import DecimatedSeries

SPEC = SessionSpec(frames=0)
SUMMARY = {key: 0 for key in SUMMARY_KEYS}


def record(i: int, error: float | None = 0.02) -> series.FrameRecord:
    matched = error is not None
    return series.FrameRecord(
        frame=i,
        t_s=i / 30,
        true_x=100.0 + i % 50,
        true_y=200.0,
        x=100.0 + i % 50 if matched else None,
        y=200.01 if matched else None,
        error_px=error,
        latency_ms=37.5 if matched else None,
        outcome=series.MATCHED if matched else series.LOST,
    )


def fill(store: DecimatedSeries, frames: int, worst: int | None = None) -> None:
    store.write(series.session_line(SPEC) + "\n")
    for i in range(frames):
        store.write(series.frame_line(record(i, 4.5 if i == worst else 0.02)) + "\n")
    store.write(series.summary_line(SUMMARY) + "\n")


def test_a_long_session_stays_bounded_and_evenly_decimated() -> None:
    store = DecimatedSeries(capacity=64)
    fill(store, 10_000, worst=4_321)
    assert store.frames_kept <= 64 and store.stride == 256
    text = store.configmap_text(12_000)
    assert text is not None and len(text.encode()) <= 12_000
    read = series.read_series_text(text)
    assert not read.bad_lines and read.spec == SPEC and read.summary == SUMMARY
    assert read.frames_total == 10_000 and read.stride % store.stride == 0
    indices = [f.frame for f in read.frames]
    assert 4_321 in indices  # the worst frame survives any decimation
    assert all(i % read.stride == 0 for i in indices if i != 4_321)


def test_the_default_bound_is_the_configmap_bound() -> None:
    store = DecimatedSeries()
    fill(store, 30_000)
    text = store.configmap_text()
    assert text is not None and len(text.encode()) <= series.CONFIGMAP_BYTES
    assert series.read_series_text(text).frames_total == 30_000


def test_a_later_line_for_a_frame_replaces_the_earlier_and_partial_writes_join() -> None:
    store = DecimatedSeries()
    store.write(series.session_line(SPEC) + "\n")
    store.write(series.frame_line(record(0, None)) + "\n")  # settled as lost...
    line = series.frame_line(record(0, 0.03))  # ...then its coordinate arrived
    store.write(line[:10])
    store.write(line[10:] + "\n" + series.summary_line(SUMMARY))
    store.close()
    text = store.configmap_text()
    assert text is not None
    (frame,) = series.read_series_text(text).frames
    assert frame.outcome == series.MATCHED and frame.error_px == 0.03


@pytest.mark.parametrize("lines", [[], [series.session_line(SPEC)], ["not json", "{}"]])
def test_nothing_to_store_without_a_session_line_and_frames(lines: list[str]) -> None:
    store = DecimatedSeries()
    for line in lines:
        store.write(line + "\n")
    assert store.configmap_text() is None


async def test_the_series_writer_feeds_the_store_with_or_without_a_file(tmp_path: Path) -> None:
    from peers.ball import BallModel, Position
    from peers.matching import Match
    from peers.series_writer import SeriesWriter

    model = BallModel(320, 240, 12, 240, 30, seed=1)
    summary = {**SUMMARY, "frames_sent": 40}
    copies = {}
    for path in (tmp_path / "s.jsonl", None):
        store = DecimatedSeries(capacity=8)
        writer = SeriesWriter(path, SPEC, model, also=store)
        for i in range(40):
            writer.on_sent(i, 10.0 + i / 30)
            truth = model.position(i)
            writer.on_match(Match(i, Position(truth.x + 0.1, truth.y), truth, 0.1, 0.04))
        await writer.close(summary)
        text = store.configmap_text()
        assert text is not None
        copies[path] = text
        read = series.read_series_text(text)
        assert not read.bad_lines and read.summary == summary and read.frames_total == 40
        assert [f.frame for f in read.frames] == list(range(0, 40, 8))
    assert copies[None] == copies[tmp_path / "s.jsonl"]
    file = series.read_series_text((tmp_path / "s.jsonl").read_text())
    assert len(file.frames) == 40  # the file keeps every frame
