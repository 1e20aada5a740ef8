import math

import pytest

from peers import protocol
from peers.ball import BallModel
from peers.matching import CoordinateMatcher, Match


@pytest.fixture
def matcher() -> CoordinateMatcher:
    return CoordinateMatcher(BallModel(640, 480, 20, 300, 30, seed=5), window=64)


def coordinate_for(m: CoordinateMatcher, frame: int, dx: float = 0.0) -> str:
    truth = m.model.position(frame)
    return protocol.encode_coordinate(frame, truth.x + dx, truth.y)


def test_error_is_measured_against_the_frame_the_coordinate_names(
    matcher: CoordinateMatcher,
) -> None:
    for i in range(10):
        matcher.on_frame_sent(i, 100.0 + i / 30)
    # coordinates arrive late and out of order: each must be compared with its own frame
    for frame in (7, 2, 9, 0):
        result = matcher.on_message(coordinate_for(matcher, frame, dx=0.5), 101.0)
        assert isinstance(result, Match)
        assert result.frame == frame
        assert result.error_px == pytest.approx(0.5, abs=1e-3)
        assert result.latency_s == pytest.approx(101.0 - (100.0 + frame / 30))
    assert matcher.stats.frames_matched == 4


def test_a_coordinate_for_the_wrong_frame_shows_as_a_large_error(
    matcher: CoordinateMatcher,
) -> None:
    matcher.on_frame_sent(0, 0.0)
    matcher.on_frame_sent(1, 0.1)
    truth_of_1 = matcher.model.position(1)
    result = matcher.on_message(protocol.encode_coordinate(0, truth_of_1.x, truth_of_1.y), 0.2)
    assert isinstance(result, Match)
    assert result.error_px > 5  # 300 px/s at 30 fps moves 10 px per frame


def test_hostile_messages_are_counted_and_never_skew_the_error(
    matcher: CoordinateMatcher,
) -> None:
    matcher.on_frame_sent(0, 0.0)
    hostile = [
        "garbage",
        b"\xff" * 100,
        "x" * 100_000,
        '{"k":"c","f":0,"x":NaN,"y":0}',
        '{"k":"c","f":0,"x":"0","y":0}',
        '{"k":"c","f":5,"x":0,"y":0}',
        None,
        3.14,
        '{"k":"end","frames":1}',
    ]
    for message in hostile:
        assert matcher.on_message(message, 1.0) is None
    assert matcher.stats.frames_matched == 0
    assert matcher.stats.summary()["mean_error_px"] is None
    assert sum(matcher.rejected.values()) == len(hostile)
    assert matcher.rejected["unknown_frame"] == 1
    assert matcher.rejected["unexpected_kind"] == 1


def test_duplicates_count_once(matcher: CoordinateMatcher) -> None:
    matcher.on_frame_sent(3, 0.0)
    assert isinstance(matcher.on_message(coordinate_for(matcher, 3), 0.1), Match)
    assert matcher.on_message(coordinate_for(matcher, 3, dx=40), 0.2) is None
    assert matcher.rejected["duplicate"] == 1
    assert matcher.stats.frames_matched == 1
    assert matcher.stats.coordinates_received == 2


def test_coordinates_older_than_the_window_are_stale(matcher: CoordinateMatcher) -> None:
    for i in range(100):  # window is 64: frame 0's slot now holds frame 64
        matcher.on_frame_sent(i, i / 30)
    assert matcher.on_message(coordinate_for(matcher, 0), 5.0) is None
    assert matcher.rejected["unknown_frame"] == 1
    assert isinstance(matcher.on_message(coordinate_for(matcher, 99), 5.0), Match)


def test_client_stats_feed_frames_dropped(matcher: CoordinateMatcher) -> None:
    for i in range(10):
        matcher.on_frame_sent(i, i / 30)
    stats = protocol.ClientStats(10, 3, 1, 0, final=True)
    assert matcher.on_message(protocol.encode_stats(stats), 0.0) == stats
    assert matcher.stats.summary()["frames_dropped_by_client"] == 3
    assert matcher.final == stats


@pytest.mark.parametrize(
    ("received", "dropped", "unreadable", "missed", "incomplete"),
    [
        (12, 0, 0, 0, 0),  # more frames than were sent (+1 flush frame)
        (8, 0, 0, 0, 4),  # more frames decoded or given up than were sent
        (4, 0, 0, 0, 0),  # fewer frames than the server matched
        (10, 5, 3, 3, 0),  # more lost before detection than received
        (2**31 - 1, 2**31 - 1, 0, 0, 0),
    ],
)
def test_implausible_client_counters_are_refused(
    matcher: CoordinateMatcher,
    received: int,
    dropped: int,
    unreadable: int,
    missed: int,
    incomplete: int,
) -> None:
    for i in range(10):
        matcher.on_frame_sent(i, i / 30)
    for i in range(5):
        assert isinstance(matcher.on_message(coordinate_for(matcher, i), 1.0), Match)
    stats = protocol.ClientStats(received, dropped, unreadable, missed, incomplete, final=True)
    assert matcher.on_message(protocol.encode_stats(stats), 1.0) is None
    assert matcher.rejected["implausible_counters"] == 1
    assert matcher.client is None and matcher.final is None
    assert matcher.stats.summary()["frames_dropped_by_client"] is None
    # the flush frame may be counted: sent + 1 is plausible
    assert matcher.on_message(protocol.encode_stats(protocol.ClientStats(11, 1, 0, 0)), 1.0)
    assert matcher.on_message(protocol.encode_stats(protocol.ClientStats(7, 1, 0, 0, 4)), 1.0)


def test_nothing_is_taken_after_the_final_counters(matcher: CoordinateMatcher) -> None:
    for i in range(4):
        matcher.on_frame_sent(i, i / 30)
    assert isinstance(matcher.on_message(coordinate_for(matcher, 0), 1.0), Match)
    final = protocol.ClientStats(2, 0, 0, 0, final=True)
    assert matcher.on_message(protocol.encode_stats(final), 1.0) == final
    assert matcher.on_message(coordinate_for(matcher, 1), 1.0) is None
    later = protocol.ClientStats(4, 0, 0, 0, final=True)
    assert matcher.on_message(protocol.encode_stats(later), 1.0) is None
    assert matcher.rejected["after_final"] == 2
    assert matcher.stats.frames_matched == 1
    assert matcher.client == final
    assert isinstance(matcher.on_message(protocol.BYE, 1.0), protocol.Bye)


def test_summary_is_finite_json(matcher: CoordinateMatcher) -> None:
    for i in range(5):
        matcher.on_frame_sent(i, i / 30)
        matcher.on_message(coordinate_for(matcher, i, dx=0.1), i / 30 + 0.04)
    summary = matcher.stats.summary()
    assert all(v is None or math.isfinite(v) for v in summary.values())
    assert summary["latency_ms_p50"] == pytest.approx(40.0)
