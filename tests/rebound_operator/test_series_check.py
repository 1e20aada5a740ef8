"""The operator reads a server's stored series as untrusted input: bounded first, then
strictly valid, never raising, and it says how to render it."""

from __future__ import annotations

import json

import pytest
from rebound_operator.series_check import check_series, report_hint

from peers import series
from peers.config import SUMMARY_KEYS, SessionSpec
from peers.series_store import DecimatedSeries


def stored(frames: int = 300) -> str:
    store = DecimatedSeries()
    store.write(series.session_line(SessionSpec(frames=frames)) + "\n")
    for i in range(frames):
        record = series.FrameRecord(i, i / 30, 50.0, 60.0, 50.01, 60.0, 0.01, 37.0, "matched")
        store.write(series.frame_line(record) + "\n")
    store.write(series.summary_line({key: 1 for key in SUMMARY_KEYS}) + "\n")
    text = store.configmap_text()
    assert text is not None
    return text


def test_a_stored_series_is_accepted_and_described() -> None:
    reading = check_series(stored())
    assert reading.problem is None and reading.frames == 300 and reading.frames_total == 300
    kind, reason, message = report_hint("demo", "team-a", reading)
    assert (kind, reason) == ("Normal", "ReportReady")
    assert "(300 frames)" in message
    assert "`kubectl rebound report demo -n team-a`" in message
    assert "`python -m rebound_operator.report -n team-a demo -o demo.html`" in message


def _lines(text: str) -> list[str]:
    return text.splitlines()


VALID = stored(30)
HEAD, *FRAMES, TAIL = _lines(VALID)
BAD_FRAME = json.loads(FRAMES[0])


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        (None, "not a non-empty string"),
        (12, "not a non-empty string"),
        ("", "not a non-empty string"),
        ("x" * (series.CONFIGMAP_BYTES + 1), "too large"),
        ("é" * (series.CONFIGMAP_BYTES // 2 + 1), "too large"),  # characters vs bytes
        ("\ud800" + VALID, "not valid UTF-8"),
        (VALID.replace(FRAMES[3], "{not json"), "invalid lines: not_json 1"),
        (VALID.replace(FRAMES[3], FRAMES[3].replace('"t_s"', '"t_s":1,"t_s"')), "duplicate_key"),
        (
            VALID.replace(FRAMES[3], FRAMES[3].replace('"error_px":0.01', '"error_px":NaN')),
            "not_finite",
        ),
        (VALID.replace(FRAMES[3], json.dumps({**BAD_FRAME, "x": 1e300})), "bad_x"),
        (VALID.replace(FRAMES[3], json.dumps({**BAD_FRAME, "extra": 1})), "bad_keys"),
        ("\n".join([HEAD, *FRAMES]), "no summary line"),
        ("\n".join([*FRAMES, TAIL]), "no session line"),
        ("\n".join([HEAD, TAIL]), "no frame"),
        ("\n".join([HEAD, *FRAMES, TAIL, HEAD]), "session_not_first"),
    ],
)
def test_anything_else_is_refused_with_a_reason(value: object, problem: str) -> None:
    reading = check_series(value)
    assert reading.series is None and reading.problem is not None
    assert problem in reading.problem and "\n" not in reading.problem
    kind, reason, message = report_hint("demo", "team-a", reading)
    assert (kind, reason) == ("Warning", "MalformedSeries")
    assert message.startswith("ignored data.series: ")
