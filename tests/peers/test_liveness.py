"""Silence and stall detection, on a fake clock."""

from __future__ import annotations

from peers.liveness import Silence, Stall


def test_silence_starts_when_something_was_expected() -> None:
    silence = Silence(limit_s=4.0)
    assert not silence.silent(1000.0)  # nothing heard yet, nothing expected yet
    silence.heard(10.0)
    assert silence.quiet_for(13.0) == 3.0
    assert not silence.silent(14.0)
    assert silence.silent(14.01)
    silence.heard(14.5)
    assert not silence.silent(15.0)


def test_a_stall_is_reported_once_and_re_armed_by_progress() -> None:
    stall = Stall(after_s=3.0)
    timeline = [(0.0, 8), (1.0, 8), (2.9, 8), (3.0, 8), (4.0, 8), (5.0, 9), (7.9, 9), (8.0, 9)]
    fired = [t for t, value in timeline if stall.update(t, value)]
    assert fired == [3.0, 8.0]
    assert stall.stalled


def test_steady_progress_never_stalls() -> None:
    stall = Stall(after_s=3.0)
    assert not any(stall.update(t / 10, t) for t in range(100))
    assert not stall.stalled
