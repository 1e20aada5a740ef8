"""The link summary: ICE path, RTCP-derived loss and RTT (untrusted), and its validation."""

import datetime
import json
import math
from types import SimpleNamespace
from typing import Any

import pytest
from aiortc.stats import (
    RTCOutboundRtpStreamStats,
    RTCRemoteInboundRtpStreamStats,
    RTCStatsReport,
    RTCTransportStats,
)
from pydantic import ValidationError

from peers.config import LINK_SUMMARY_KEYS, LinkSummary
from peers.link import (
    IcePath,
    LinkMonitor,
    ReceiverReport,
    candidate_type,
    ice_path,
    parse_sender_stats,
    plausible_loss,
    plausible_rtt_ms,
)

NOW = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)


def pair(local: str, remote: Any, transport: str = "udp") -> SimpleNamespace:
    return SimpleNamespace(
        local_candidate=SimpleNamespace(type=local, transport=transport),
        remote_candidate=SimpleNamespace(type=remote),
    )


@pytest.mark.parametrize("value", ["host", "srflx", "prflx", "relay"])
def test_known_candidate_types_pass(value: str) -> None:
    assert candidate_type(value) == value


@pytest.mark.parametrize("value", ["HOST", "relayed", "", None, 3, "host\n", "x" * 1000])
def test_anything_else_the_other_peer_says_is_unknown(value: object) -> None:
    assert candidate_type(value) is None


def test_ice_path_of_a_nominated_pair() -> None:
    assert ice_path(pair("relay", "srflx", "UDP")) == IcePath("relay", "srflx", "udp")
    assert ice_path(pair("host", "prflx", "tcp")) == IcePath("host", "prflx", "tcp")
    assert ice_path(pair("host", "<script>", "sctp")) == IcePath("host", None, None)
    assert ice_path(None) == IcePath(None, None, None)


@pytest.mark.parametrize(
    ("lost", "sent", "expected"),
    [
        (0, 1000, (0, 0.0)),
        (50, 1000, (50, 5.0)),
        (-3, 1000, (0, 0.0)),  # duplicates make the RFC 3550 count negative
        (1001, 1000, None),  # more lost than sent: a lie
        (0, 0, None),
    ],
)
def test_loss_is_checked_against_what_was_sent(
    lost: int, sent: int, expected: tuple[int, float] | None
) -> None:
    assert plausible_loss(ReceiverReport(lost, sent, None)) == expected


@pytest.mark.parametrize(
    ("rtt_s", "expected"),
    [(0.0012, 1.2), (0.0, 0.0), (59.9, 59_900.0), (-0.5, None), (61.0, None), (math.nan, None)],
)
def test_rtt_must_be_finite_and_bounded(rtt_s: float, expected: float | None) -> None:
    result = plausible_rtt_ms(rtt_s)
    assert result == (None if expected is None else pytest.approx(expected))


def sender_report(lost: int = 7, received: int = 993, rtt: float | None = 0.004) -> RTCStatsReport:
    report = RTCStatsReport()
    report.add(
        RTCOutboundRtpStreamStats(
            timestamp=NOW,
            type="outbound-rtp",
            id="out",
            ssrc=1,
            kind="video",
            transportId="t",
            packetsSent=1200,
            bytesSent=125_000,
            trackId="x",
        )
    )
    report.add(
        RTCRemoteInboundRtpStreamStats(
            timestamp=NOW,
            type="remote-inbound-rtp",
            id="rin",
            ssrc=1,
            kind="video",
            transportId="t",
            packetsReceived=received,
            packetsLost=lost,
            jitter=0,
            roundTripTime=rtt,  # type: ignore[arg-type]
            fractionLost=0,
        )
    )
    report.add(
        RTCTransportStats(
            timestamp=NOW,
            type="transport",
            id="t",
            packetsSent=1,
            packetsReceived=1,
            bytesSent=999_999,
            bytesReceived=1,
            iceRole="controlling",
            dtlsState="connected",
        )
    )
    return report


def test_sender_stats_give_payload_bytes_and_the_latest_receiver_report() -> None:
    sent, report = parse_sender_stats(sender_report())
    assert sent == 125_000  # the media payload, not the transport's bytes
    assert report == ReceiverReport(7, 1000, 0.004)
    assert parse_sender_stats(RTCStatsReport()) == (None, None)


class FakeSender:
    """Just enough of an RTCRtpSender for LinkMonitor.sample()."""

    def __init__(self, report: RTCStatsReport, nominated: Any) -> None:
        self.report = report
        connection = SimpleNamespace(_nominated={1: nominated})
        self.transport = SimpleNamespace(transport=SimpleNamespace(_connection=connection))

    async def getStats(self) -> RTCStatsReport:
        return self.report


async def test_monitor_summary_is_a_valid_link_summary() -> None:
    sender = FakeSender(sender_report(), pair("host", "srflx"))
    monitor = LinkMonitor(sender, 300)  # type: ignore[arg-type]
    monitor.codec = "H264"
    await monitor.sample()
    summary = monitor.summary(streaming_s=4.0, unreadable=2, incomplete=1)
    assert tuple(summary) == LINK_SUMMARY_KEYS
    assert summary == {
        "codec": "H264",
        "target_bitrate_kbps": 300,
        "measured_bitrate_kbps": 250.0,  # 125 kB * 8 / 4 s
        "frames_unreadable": 2,
        "frames_incomplete": 1,
        "ice_local_candidate_type": "host",
        "ice_remote_candidate_type": "srflx",
        "ice_protocol": "udp",
        "rtt_ms": 4.0,
        "packets_lost": 7,
        "packet_loss_pct": 0.7,
    }
    LinkSummary.model_validate_json(json.dumps(summary))


async def test_a_forged_receiver_report_keeps_the_last_plausible_values() -> None:
    sender = FakeSender(sender_report(lost=5, received=995, rtt=0.002), pair("host", "host"))
    monitor = LinkMonitor(sender, 1000)  # type: ignore[arg-type]
    await monitor.sample()
    sender.report = sender_report(lost=5000, received=-3800, rtt=-4.0)
    await monitor.sample()
    summary = monitor.summary(None, None, None)
    assert (summary["packets_lost"], summary["rtt_ms"]) == (5, 2.0)
    assert summary["measured_bitrate_kbps"] is None
    assert monitor.rejected == {"implausible_loss": 1, "implausible_rtt": 1}


def valid_summary() -> dict[str, Any]:
    return {
        "codec": "VP8",
        "target_bitrate_kbps": 1000,
        "measured_bitrate_kbps": 987.5,
        "frames_unreadable": 0,
        "frames_incomplete": None,
        "ice_local_candidate_type": "relay",
        "ice_remote_candidate_type": "host",
        "ice_protocol": "tcp",
        "rtt_ms": 12,
        "packets_lost": 3,
        "packet_loss_pct": 0.5,
    }


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("codec", "AV1"),
        ("target_bitrate_kbps", 49),
        ("target_bitrate_kbps", "1000"),
        ("target_bitrate_kbps", 1000.0),
        ("measured_bitrate_kbps", -1),
        ("measured_bitrate_kbps", 1e300),
        ("frames_unreadable", True),
        ("frames_unreadable", 2**53),
        ("ice_local_candidate_type", "HOST"),
        ("ice_protocol", "quic"),
        ("rtt_ms", 60_001),
        ("packet_loss_pct", 100.5),
    ],
)
def test_the_operator_side_refuses_what_cannot_be_true(key: str, value: object) -> None:
    with pytest.raises(ValidationError):
        LinkSummary.model_validate_json(json.dumps({**valid_summary(), key: value}))


def test_every_key_must_be_present_and_nan_is_refused() -> None:
    LinkSummary.model_validate_json(json.dumps({**valid_summary(), "extra": 1}))
    for key in LINK_SUMMARY_KEYS:
        partial = {k: v for k, v in valid_summary().items() if k != key}
        with pytest.raises(ValidationError):
            LinkSummary.model_validate_json(json.dumps(partial))
    with pytest.raises(ValidationError):
        LinkSummary.model_validate_json(json.dumps(valid_summary()).replace("12,", "NaN,"))
