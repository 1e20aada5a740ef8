import pytest

from peers.metrics import SUMMARY_KEYS, SessionStats, euclidean, format_summary, percentile


def test_euclidean() -> None:
    assert euclidean(0, 0, 3, 4) == 5.0


def test_percentile_interpolates_and_handles_empty() -> None:
    assert percentile([], 95) is None
    assert percentile([1.0, 2.0, 3.0, 4.0, 5.0], 50) == 3.0
    assert percentile([0.0, 10.0], 95) == pytest.approx(9.5)


def test_summary_has_exactly_the_contract_keys_and_none_when_unknown() -> None:
    summary = SessionStats().summary()
    assert tuple(summary) == SUMMARY_KEYS
    assert summary["frames_sent"] == 0
    assert summary["mean_error_px"] is None
    assert summary["frames_dropped_by_client"] is None
    assert summary["achieved_fps"] is None


def test_summary_values() -> None:
    stats = SessionStats()
    for i in range(31):
        stats.record_sent(10.0 + i / 30)
    for i, error in enumerate([0.1, 0.2, 0.3, 0.4]):
        stats.record_match(error, 0.030 + i * 0.002)
    stats.coordinates_received = 5
    stats.frames_dropped_by_client = 2
    s = stats.summary()
    assert s["frames_sent"] == 31
    assert s["frames_matched"] == 4
    assert s["coordinates_received"] == 5
    assert s["frames_dropped_by_client"] == 2
    assert s["mean_error_px"] == pytest.approx(0.25)
    assert s["max_error_px"] == pytest.approx(0.4)
    assert s["p95_error_px"] == pytest.approx(0.385)
    assert s["achieved_fps"] == pytest.approx(30.0)
    assert s["latency_ms_p50"] == pytest.approx(33.0)
    assert s["latency_ms_p95"] == pytest.approx(35.7)


def test_format_summary_mentions_the_key_numbers() -> None:
    stats = SessionStats()
    stats.record_sent(0.0)
    stats.record_sent(0.5)
    stats.record_match(0.125, 0.04)
    text = format_summary(stats.summary())
    assert "frames sent        2" in text
    assert "50.0%" in text
    assert "0.125" in text
    assert "unknown" in text  # client drops never reported
