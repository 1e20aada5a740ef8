"""The server's summary as untrusted input: bounded, parsed safely, checked for plausibility."""

import json
from typing import Any

import pytest
from rebound_operator.metrics import MAX_COUNT, MAX_METRICS_TEXT, check_metrics, read_metrics

GOOD = {
    "frames_sent": 300,
    "coordinates_received": 299,
    "frames_matched": 299,
    "frames_dropped_by_client": 0,
    "mean_error_px": 0.02,
    "p95_error_px": 0.05,
    "max_error_px": 0.1,
    "achieved_fps": 30.0,
    "latency_ms_p50": 37.0,
    "latency_ms_p95": 39.0,
}


def text(**overrides: Any) -> str:
    return json.dumps({**GOOD, **overrides})


def test_a_real_summary_passes() -> None:
    assert check_metrics(text()) == (GOOD, None)


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        # item 3: nesting that blows the parser's recursion limit
        ("[" * 100_000, "too large"),
        ("[" * 4000, "not JSON (RecursionError)"),
        # item 4: huge values are refused before parsing
        (text(extra="x" * 450_000), "too large"),
        # item 5: implausible numbers
        (text(mean_error_px=-5.0), "mean_error_px is out of range"),
        (text(frames_matched=5000, frames_sent=-1), "frames_sent is out of range"),
        (text(frames_matched=5000), "frames_matched 5000 exceeds frames_sent 300"),
        (text(coordinates_received=10), "frames_matched 299 exceeds coordinates_received 10"),
        (text(frames_dropped_by_client=int("9" * 401)), "frames_dropped_by_client is out of range"),
        (text(frames_sent=MAX_COUNT + 1), "frames_sent is out of range"),
        (text(mean_error_px=int("9" * 401)), "mean_error_px is out of range"),
        (text(max_error_px=1e308), "max_error_px is out of range"),
        (text(achieved_fps=float("inf")), "achieved_fps is not finite"),
        (text(latency_ms_p50=float("nan")), "latency_ms_p50 is not finite"),
        (text(frames_sent=True), "frames_sent is not an integer"),
        (text(frames_sent=None), "frames_sent is missing"),
        (text(frames_sent=3.0), "frames_sent is not an integer"),
        (text(mean_error_px="0.1"), "mean_error_px is not a number"),
        (text(mean_error_px=None), "mean_error_px is null although 299 frames matched"),
        (text(frames_matched=0), "mean_error_px is set although no frame matched"),
        (text(mean_error_px=0.5), "mean_error_px 0.5 exceeds max_error_px 0.1"),
        (text(p95_error_px=0.5), "p95_error_px 0.5 exceeds max_error_px 0.1"),
        (text(latency_ms_p50=50.0), "latency_ms_p50 50 exceeds latency_ms_p95 39"),
        ("9" * 4090, "not a JSON object but int"),
        ('"just a string"', "not a JSON object but str"),
    ],
)
def test_bad_summaries_are_refused_saying_why(raw: str, problem: str) -> None:
    metrics, why = check_metrics(raw)
    assert metrics is None
    assert why is not None and problem in why, why
    assert len(why) < 200


def test_the_size_bound_is_checked_before_parsing() -> None:
    padded = text(note=" " * (MAX_METRICS_TEXT - len(text(note=""))))
    assert len(padded) == MAX_METRICS_TEXT
    assert check_metrics(padded)[0] is not None
    assert "too large" in str(check_metrics(padded + " ")[1])


def test_unknown_keys_never_reach_the_result_or_the_message() -> None:
    metrics, why = check_metrics(text(secret_key_name_from_a_peer=1))
    assert why is None and metrics == GOOD


def test_read_metrics_never_raises_on_hostile_values() -> None:
    for hostile in ("[" * 100_000, "{" * 3000, "\x00\xff", text(frames_sent=-1), "1e999"):
        reading = read_metrics(hostile, hostile)
        assert reading.final is None and reading.live is None and reading.problem


LINK = {
    "codec": "H264",
    "target_bitrate_kbps": 600,
    "measured_bitrate_kbps": 587.5,
    "frames_unreadable": 2,
    "frames_incomplete": 1,
    "ice_local_candidate_type": "host",
    "ice_remote_candidate_type": "srflx",
    "ice_protocol": "udp",
    "rtt_ms": 1.5,
    "packets_lost": 3,
    "packet_loss_pct": 0.1,
}


def test_the_link_keys_pass_through_checked_and_an_older_peer_needs_none() -> None:
    assert check_metrics(text(**LINK)) == ({**GOOD, **LINK}, None)
    # JSON integers where numbers are expected are the same numbers.
    values, problem = check_metrics(text(**{**LINK, "rtt_ms": 2}))
    assert problem is None and values is not None and values["rtt_ms"] == 2.0
    nulls = dict.fromkeys(LINK, None) | {"target_bitrate_kbps": 1000}
    assert check_metrics(text(**nulls)) == ({**GOOD, **nulls}, None)


@pytest.mark.parametrize(
    ("link", "problem"),
    [
        ({**LINK, "codec": "AV1"}, "codec: "),
        ({**LINK, "ice_protocol": "sctp"}, "ice_protocol: "),
        ({**LINK, "ice_local_candidate_type": "<script>"}, "ice_local_candidate_type: "),
        ({**LINK, "rtt_ms": 60_001}, "rtt_ms: "),
        ({**LINK, "rtt_ms": True}, "rtt_ms: "),
        ({**LINK, "packet_loss_pct": 101}, "packet_loss_pct: "),
        ({**LINK, "measured_bitrate_kbps": "fast"}, "measured_bitrate_kbps: "),
        ({**LINK, "target_bitrate_kbps": 10}, "target_bitrate_kbps: "),
        ({**LINK, "frames_unreadable": -1}, "frames_unreadable: "),
        ({**LINK, "frames_unreadable": 301}, "frames_unreadable 301 exceeds frames_sent 300"),
        ({**LINK, "frames_incomplete": 2**60}, "frames_incomplete: "),
        ({k: v for k, v in LINK.items() if k != "rtt_ms"}, "rtt_ms: "),  # all or none
    ],
)
def test_bad_link_keys_are_refused_naming_the_key(link: dict[str, Any], problem: str) -> None:
    values, found = check_metrics(text(**link))
    assert values is None
    assert found is not None and problem in found, found
    assert "\n" not in found and len(found) < 200


def test_the_status_names_the_candidate_pair() -> None:
    from rebound_operator.lifecycle import candidate_pair

    assert candidate_pair({**GOOD, **LINK}) == "host/srflx udp"
    assert candidate_pair({**GOOD, **LINK, "ice_protocol": None}) == "host/srflx"
    assert candidate_pair(GOOD) is None
    reading = read_metrics(text(**LINK), None)
    assert reading.final is not None and reading.final["codec"] == "H264"
