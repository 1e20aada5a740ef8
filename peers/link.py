"""What the server knows of the media link: codec, bitrate on the wire, ICE path, RTCP.

`LinkMonitor.sample()` reads the video sender's `getStats()` (outbound bytes and packets, and
the remote-inbound stats aiortc derives from the client's RTCP receiver reports) and the
nominated ICE candidate pair; `LinkMonitor.summary()` turns them into the summary's
LINK_SUMMARY_KEYS. Receiver reports come from the other peer: their loss counts and the RTT
derived from them are checked (`plausible_*`) and dropped when they cannot be true, counted in
`LinkMonitor.rejected`. The parsing is pure; only `sample()` touches aiortc.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any, get_args

from aiortc import RTCRtpSender
from aiortc.stats import RTCOutboundRtpStreamStats, RTCRemoteInboundRtpStreamStats

from peers import aiortc_internals
from peers.config import (
    MAX_MEASURED_BITRATE_KBPS,
    MAX_RTT_MS,
    Codec,
    IceCandidateType,
    IceProtocol,
    LinkSummary,
)

CANDIDATE_TYPES: tuple[str, ...] = get_args(IceCandidateType)
PROTOCOLS: tuple[str, ...] = get_args(IceProtocol)


@dataclass(frozen=True)
class IcePath:
    """The selected candidate pair: each side's candidate type and the transport protocol."""

    local: IceCandidateType | None
    remote: IceCandidateType | None
    protocol: IceProtocol | None


def candidate_type(value: object) -> IceCandidateType | None:
    """`value` if it is a known ICE candidate type (the remote one comes from the other
    peer's SDP), else None."""
    return value if isinstance(value, str) and value in CANDIDATE_TYPES else None  # type: ignore[return-value]


def ice_path(pair: Any) -> IcePath:
    """The IcePath of an aioice CandidatePair (or None: no pair nominated yet)."""
    if pair is None:
        return IcePath(None, None, None)
    local = getattr(pair, "local_candidate", None)
    remote = getattr(pair, "remote_candidate", None)
    protocol = str(getattr(local, "transport", "")).lower()
    return IcePath(
        candidate_type(getattr(local, "type", None)),
        candidate_type(getattr(remote, "type", None)),
        protocol if protocol in PROTOCOLS else None,  # type: ignore[arg-type]
    )


@dataclass(frozen=True)
class ReceiverReport:
    """What the latest receiver report said, as aiortc's sender recorded it."""

    packets_lost: int
    packets_sent: int
    """Packets the server had sent when the report arrived."""
    rtt_s: float | None


def plausible_loss(report: ReceiverReport) -> tuple[int, float] | None:
    """(packets lost, loss %) if the report's cumulative loss can be true, else None.

    RFC 3550 lets the cumulative loss go negative with duplicates (taken as 0); more lost
    than sent is a lie.
    """
    sent = report.packets_sent
    lost = max(0, report.packets_lost)
    if sent <= 0 or lost > sent:
        return None
    return lost, 100.0 * lost / sent


def plausible_rtt_ms(rtt_s: float | None) -> float | None:
    """The RTT in ms if it is a finite value in 0..MAX_RTT_MS, else None.

    aiortc derives it from the client's delay-since-last-SR, which the client could forge.
    """
    if rtt_s is None or not isinstance(rtt_s, int | float) or rtt_s != rtt_s:
        return None
    rtt_ms = float(rtt_s) * 1000.0
    return rtt_ms if 0.0 <= rtt_ms <= MAX_RTT_MS else None


def parse_sender_stats(stats: dict[str, Any]) -> tuple[int | None, ReceiverReport | None]:
    """(payload bytes sent, latest receiver report) from a sender's getStats() report."""
    sent_bytes: int | None = None
    packets_sent = 0
    remote: RTCRemoteInboundRtpStreamStats | None = None
    for entry in stats.values():
        if isinstance(entry, RTCOutboundRtpStreamStats):
            sent_bytes = int(entry.bytesSent)
            packets_sent = int(entry.packetsSent)
        elif isinstance(entry, RTCRemoteInboundRtpStreamStats):
            remote = entry
    if remote is None:
        return sent_bytes, None
    # aiortc stores packetsReceived as (packets sent at that moment) - packetsLost
    at_report = int(remote.packetsReceived) + int(remote.packetsLost)
    report = ReceiverReport(
        int(remote.packetsLost), at_report if at_report > 0 else packets_sent, remote.roundTripTime
    )
    return sent_bytes, report


class LinkMonitor:
    """Samples the video sender's stats and the ICE path during a session (server side)."""

    def __init__(self, sender: RTCRtpSender, target_kbps: int) -> None:
        self.sender = sender
        self.target_kbps = target_kbps
        self.codec: Codec | None = None
        self.rejected: Counter[str] = Counter()
        self.bytes_sent = 0
        self.path = IcePath(None, None, None)
        self.packets_lost: int | None = None
        self.loss_pct: float | None = None
        self.rtt_ms: float | None = None
        self._report: ReceiverReport | None = None

    async def sample(self) -> None:
        """Read the sender's stats and the selected candidate pair now."""
        sent_bytes, report = parse_sender_stats(await self.sender.getStats())
        if sent_bytes is not None:
            self.bytes_sent = sent_bytes
        if report is not None and report != self._report:
            self._report = report
            self._take(report)
        path = ice_path(aiortc_internals.nominated_pair(self.sender.transport.transport))
        if path.local is not None:
            self.path = path

    def _take(self, report: ReceiverReport) -> None:
        loss = plausible_loss(report)
        if loss is None:
            self.rejected["implausible_loss"] += 1
        else:
            self.packets_lost, self.loss_pct = loss[0], round(loss[1], 3)
        rtt_ms = plausible_rtt_ms(report.rtt_s)
        if rtt_ms is None:
            if report.rtt_s is not None:
                self.rejected["implausible_rtt"] += 1
        else:
            self.rtt_ms = round(rtt_ms, 2)

    def summary(
        self,
        streaming_s: float | None,
        unreadable: int | None,
        incomplete: int | None,
    ) -> dict[str, Any]:
        """The LINK_SUMMARY_KEYS part of the summary. `streaming_s`: seconds of streaming;
        `unreadable`/`incomplete`: the client's counters (None: never reported)."""
        measured = None
        if streaming_s and streaming_s > 0:
            kbps = self.bytes_sent * 8 / streaming_s / 1000.0
            measured = round(min(kbps, MAX_MEASURED_BITRATE_KBPS), 1)
        return LinkSummary(
            codec=self.codec,
            target_bitrate_kbps=self.target_kbps,
            measured_bitrate_kbps=measured,
            frames_unreadable=unreadable,
            frames_incomplete=incomplete,
            ice_local_candidate_type=self.path.local,
            ice_remote_candidate_type=self.path.remote,
            ice_protocol=self.path.protocol,
            rtt_ms=self.rtt_ms,
            packets_lost=self.packets_lost,
            packet_loss_pct=self.loss_pct,
        ).model_dump()
