"""spec.expect: which gates apply, how each judges a summary, and what a failure says."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from rebound_operator.gates import failure, judge, limits
from rebound_operator.lifecycle import Observation, PodView, Signals, evaluate
from rebound_operator.metrics import parse_metrics
from rebound_operator.spec import InvalidSpec, parse_spec

T0 = datetime(2026, 11, 24, 12, 0, 0, tzinfo=UTC)
GOOD = {
    "frames_sent": 300,
    "coordinates_received": 290,
    "frames_matched": 285,
    "frames_dropped_by_client": 0,
    "mean_error_px": 0.2,
    "p95_error_px": 0.6,
    "max_error_px": 1.1,
    "achieved_fps": 29.5,
    "latency_ms_p50": 37.0,
    "latency_ms_p95": 48.0,
}


def verdict(raw: dict[str, Any], **summary: Any) -> tuple[str | None, str | None]:
    metrics = parse_metrics(json.dumps({**GOOD, **summary}))
    assert metrics is not None
    spec = parse_spec(raw)
    found = failure(spec, judge(spec, metrics))
    return found if found else (None, None)


def test_the_mean_error_gate_always_applies() -> None:
    assert [(k.field, v) for k, v in limits(parse_spec({}))] == [("maxMeanErrorPx", 1.0)]
    assert [(k.field, v) for k, v in limits(parse_spec({"maxMeanErrorPx": 0.3}))] == [
        ("maxMeanErrorPx", 0.3)
    ]
    every = parse_spec(
        {
            "expect": {
                "maxMeanErrorPx": 0.5,
                "maxP95ErrorPx": 1,
                "minMatchedRatio": 0.9,
                "minFps": 25,
                "maxLatencyMsP95": 100,
            }
        }
    )
    assert [(k.field, v) for k, v in limits(every)] == [
        ("maxMeanErrorPx", 0.5),
        ("maxP95ErrorPx", 1.0),
        ("minMatchedRatio", 0.9),
        ("minFps", 25.0),
        ("maxLatencyMsP95", 100.0),
    ]


@pytest.mark.parametrize(
    ("raw", "summary", "reason", "message"),
    [
        ({}, {}, None, None),
        # The old field alone keeps its old reason and message.
        (
            {"maxMeanErrorPx": 0.1},
            {},
            "ErrorTooHigh",
            "mean error 0.2 px exceeds maxMeanErrorPx 0.1",
        ),
        ({}, {"mean_error_px": 1.5, "max_error_px": 2}, "ErrorTooHigh", "exceeds maxMeanErrorPx 1"),
        # The same limit given in spec.expect speaks the new language.
        (
            {"expect": {"maxMeanErrorPx": 0.1}},
            {},
            "ExpectationNotMet",
            "1 of 1 gate not met: maxMeanErrorPx 0.1 px: mean error 0.2 px exceeds it by 0.1 px",
        ),
        # Limits are inclusive.
        ({"expect": {"maxP95ErrorPx": 0.6, "minFps": 29.5, "maxLatencyMsP95": 48}}, {}, None, None),
        ({"expect": {"minMatchedRatio": 0.95}}, {}, None, None),  # 285/300 = 0.95
        (
            {"expect": {"minMatchedRatio": 0.96}},
            {},
            "ExpectationNotMet",
            "minMatchedRatio 0.96: matched ratio 0.95 falls short by 0.01",
        ),
        (
            {"expect": {"minFps": 30}},
            {},
            "ExpectationNotMet",
            "1 of 2 gates not met: minFps 30 fps: frame rate 29.5 fps falls short by 0.5 fps",
        ),
        (
            {"expect": {"maxLatencyMsP95": 40, "maxP95ErrorPx": 0.5, "minFps": 20}},
            {},
            "ExpectationNotMet",
            "2 of 4 gates not met: maxP95ErrorPx 0.5 px: p95 error 0.6 px exceeds it by 0.1 px; "
            "maxLatencyMsP95 40 ms: latency p95 48 ms exceeds it by 8 ms",
        ),
        # A default mean gate failing next to an expect gate: one reason, both named.
        (
            {"expect": {"minFps": 30}},
            {"mean_error_px": 1.2, "max_error_px": 2},
            "ExpectationNotMet",
            "2 of 2 gates not met: maxMeanErrorPx 1 px: mean error 1.2 px exceeds it by 0.2 px",
        ),
        # Nothing measured holds no gate.
        (
            {"expect": {"maxLatencyMsP95": 100}},
            {"latency_ms_p50": None, "latency_ms_p95": None},
            "ExpectationNotMet",
            "maxLatencyMsP95 100 ms: latency p95 was not measured",
        ),
        (
            {"expect": {"maxP95ErrorPx": 1}},
            {"p95_error_px": None},
            "ExpectationNotMet",
            "p95 error was not measured",
        ),
    ],
    ids=[
        "defaults-pass",
        "legacy-field",
        "legacy-default",
        "expect-mean",
        "inclusive-limits",
        "matched-ratio-at-limit",
        "matched-ratio-short",
        "fps-short",
        "two-of-four",
        "default-mean-and-expect",
        "latency-unmeasured",
        "p95-unmeasured",
    ],
)
def test_gate_verdicts(
    raw: dict[str, Any], summary: dict[str, Any], reason: str | None, message: str | None
) -> None:
    found_reason, found_message = verdict(raw, **summary)
    assert found_reason == reason
    if message is None:
        assert found_message is None
    else:
        assert found_message is not None and message in found_message, found_message


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"maxMeanErrorPx": 1, "expect": {"maxMeanErrorPx": 1}}, "keep only expect.maxMeanErrorPx"),
        ({"fps": 15, "expect": {"minFps": 20}}, "can never be met at fps 15"),
        ({"expect": {"minMatchedRatio": 1.5}}, "spec.expect.minMatchedRatio"),
        ({"expect": {"maxLatencyMsP95": -1}}, "spec.expect.maxLatencyMsP95"),
        ({"expect": {"minBitrate": 1}}, "spec.expect.minBitrate: Extra inputs"),
    ],
)
def test_impossible_or_contradictory_gates_are_refused(raw: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidSpec, match=message):
        parse_spec(raw)


def _completed(raw: dict[str, Any], **summary: Any) -> dict[str, Any]:
    done = PodView("s-server", "Succeeded", exit_code=0, started=True, finished_at=T0)
    obs = Observation(
        now=T0 + timedelta(seconds=1),
        start=T0 - timedelta(seconds=30),
        server=done,
        client=PodView("s-client", "Succeeded", exit_code=0, started=True, finished_at=T0),
        signals=Signals.read(
            {"offer": "o", "summary": json.dumps({**GOOD, **summary})}, {"answer": "a"}
        ),
    )
    return evaluate(parse_spec(raw), obs, {"phase": "Connected"}).status


def test_the_verdict_lists_every_gate_in_the_status() -> None:
    status = _completed({"expect": {"minFps": 30, "maxP95ErrorPx": 1}})
    assert (status["phase"], status["reason"]) == ("Failed", "ExpectationNotMet")
    assert status["gates"] == [
        {"name": "maxMeanErrorPx", "limit": 1.0, "measured": 0.2, "met": True},
        {"name": "maxP95ErrorPx", "limit": 1.0, "measured": 0.6, "met": True},
        {"name": "minFps", "limit": 30.0, "measured": 29.5, "met": False},
    ]
    conditions = {c["type"]: c for c in status["conditions"]}
    assert conditions["Failed"]["reason"] == "ExpectationNotMet"
    assert "minFps 30 fps" in conditions["Failed"]["message"]
    passed = _completed({"expect": {"minFps": 29}})
    assert (passed["phase"], passed["reason"]) == ("Succeeded", "Completed")
    assert all(gate["met"] for gate in passed["gates"])
    legacy = _completed({"maxMeanErrorPx": 0.1})
    assert legacy["reason"] == "ErrorTooHigh"
    assert legacy["gates"] == [
        {"name": "maxMeanErrorPx", "limit": 0.1, "measured": 0.2, "met": False}
    ]


def test_no_gates_are_recorded_for_a_session_that_was_not_judged() -> None:
    status = _completed(
        {},
        frames_matched=0,
        coordinates_received=0,
        mean_error_px=None,
        p95_error_px=None,
        max_error_px=None,
    )
    assert status["reason"] == "NoMeasurements"
    assert "gates" not in status
