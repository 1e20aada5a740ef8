"""The server's series writer: settled frames in index order, late coordinates, failures."""

from __future__ import annotations

from pathlib import Path

import pytest

from peers import series
from peers.ball import BallModel, Position
from peers.config import SessionSpec
from peers.matching import Match
from peers.series_writer import SeriesError, SeriesWriter

SPEC = SessionSpec(frames=0)
MODEL = BallModel(640, 480, 20, 240, 30, seed=1)


def match(frame: int, dx: float = 0.25, latency_s: float = 0.04) -> Match:
    truth = MODEL.position(frame)
    return Match(frame, Position(truth.x + dx, truth.y), truth, abs(dx), latency_s)


async def test_frames_settle_by_match_or_horizon_and_come_out_in_order(tmp_path: Path) -> None:
    path = tmp_path / "s.jsonl"
    writer = SeriesWriter(path, SPEC, MODEL, horizon_s=1.0)
    for i in range(6):
        writer.on_sent(i, 100.0 + i / 30)
    writer.on_match(match(0))
    writer.on_match(match(2))  # frame 1 still open: 2 waits behind it
    writer.on_outcome(3, series.NO_BALL)
    writer.on_outcome(4, "bogus")  # ignored
    writer.flush(100.1)
    writer.flush(102.0)  # every frame is now older than the horizon
    writer.on_match(match(1, dx=1.5))  # arrives after frame 1 was written as lost
    await writer.close({"frames_sent": 6})
    lines = path.read_text().splitlines()
    assert lines[0] == series.session_line(SPEC)
    frames = [line for line in lines if '"type":"frame"' in line]
    assert [series.read_series([f]).frames[0].frame for f in frames] == [0, 1, 2, 3, 4, 5, 1]
    assert lines[-1] == series.summary_line({"frames_sent": 6})
    read = series.read_series(lines)
    assert read.bad_lines == {"bad_summary": 1}  # the stand-in summary lacks the keys
    outcomes = [r.outcome for r in read.frames]
    assert outcomes == ["matched", "matched", "matched", "no_ball", "lost", "lost"]
    one = read.frames[1]
    assert one.error_px == 1.5 and one.latency_ms == 40.0
    truth = MODEL.position(1)
    assert (one.true_x, one.true_y) == (round(truth.x, 4), round(truth.y, 4))
    assert read.frames[5].t_s == pytest.approx(5 / 30, abs=1e-4)


async def test_the_end_writes_frames_not_yet_settled(tmp_path: Path) -> None:
    path = tmp_path / "s.jsonl"
    writer = SeriesWriter(path, SPEC, MODEL)
    for i in range(100):
        writer.on_sent(i, 5.0 + i / 30)
        if i % 3:
            writer.on_match(match(i))
    writer.flush(6.0)
    await writer.close(None)
    await writer.close(None)  # once only
    read = series.read_series(path.read_text().splitlines())
    assert [r.frame for r in read.frames] == list(range(100))
    assert sum(r.outcome == "matched" for r in read.frames) == 66
    assert writer.lines_written == 101


async def test_frames_sent_out_of_order_wait_for_their_turn(tmp_path: Path) -> None:
    path = tmp_path / "s.jsonl"
    writer = SeriesWriter(path, SPEC, MODEL, horizon_s=0.0)
    for i in (1, 0, 3, 2, 5):  # 4 never sent
        writer.on_sent(i, 1.0)
    writer.flush(10.0)
    await writer.close(None)
    read = series.read_series(path.read_text().splitlines())
    assert [r.frame for r in read.frames] == [0, 1, 2, 3, 5]


def test_an_unwritable_path_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(SeriesError, match="cannot write --series"):
        SeriesWriter(tmp_path / "missing" / "s.jsonl", SPEC, MODEL)


async def test_a_write_failure_is_reported_at_the_end(tmp_path: Path) -> None:
    full = Path("/dev/full")
    if not full.exists():
        pytest.skip("/dev/full is not available")
    writer = SeriesWriter(full, SPEC, MODEL)
    for i in range(5000):
        writer.on_sent(i, i / 30)
    with pytest.raises(SeriesError, match="cannot write --series /dev/full"):
        await writer.close(None)
