"""The live view's numbers and frames, without a network."""

from __future__ import annotations

from array import array

import cv2
import numpy as np

from peers import overlay
from peers.ball import BallModel, Position
from peers.live_numbers import RunningNumbers, Snapshot
from peers.matching import Match
from peers.view import jpeg

MODEL = BallModel(320, 240, 12, 240, 30, seed=3)


def snap(sent: int, errors: list[float], latencies: list[float], last: Match | None) -> Snapshot:
    return Snapshot("streaming", sent, array("d", errors), array("d", latencies), 0, last)


def test_numbers_now_cover_the_last_second_and_means_the_whole_session() -> None:
    numbers = RunningNumbers(window_s=1.0)
    first = numbers.update(snap(0, [], [], None), 100.0)
    assert first["fps_now"] is None and first["error_px_mean"] is None
    errors = [0.1] * 30
    latencies = [0.040] * 30
    n = numbers.update(snap(30, errors, latencies, None), 101.0)
    assert n["fps_now"] == 30.0 and n["error_px_now"] == 0.1 and n["latency_ms_now"] == 40.0
    errors += [0.3] * 15
    latencies += [0.060] * 15
    n = numbers.update(snap(45, errors, latencies, None), 101.5)
    n = numbers.update(snap(60, errors + [0.3] * 15, latencies + [0.06] * 15, None), 102.0)
    assert n["fps_now"] == 30.0  # 30 frames over the last second
    assert n["error_px_now"] == 0.3 and n["latency_ms_now"] == 60.0
    assert n["error_px_mean"] == 0.2 and n["frames_matched"] == 60


def test_a_frame_is_drawn_with_the_ball_truth_and_detection() -> None:
    truth = MODEL.position(7)
    match = Match(7, Position(truth.x + 0.5, truth.y), truth, 0.5, 0.04)
    drawn = overlay.SentFrames(MODEL).draw(7, truth, match.detected, ["frame 7  error 0.5 px"])
    frame = cv2.imdecode(np.frombuffer(jpeg(drawn), np.uint8), cv2.IMREAD_COLOR)
    assert frame.shape == (240, 320, 3)
    x, y = round(truth.x), round(truth.y)
    around = frame[y - 16 : y + 17, x - 16 : x + 17].astype(np.int16)
    green = (np.abs(around - (0, 200, 0)).max(axis=2) < 70).sum()
    red = (np.abs(around - (0, 0, 255)).max(axis=2) < 70).sum()
    assert green > 20 and red > 20
