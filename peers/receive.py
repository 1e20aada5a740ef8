"""The client's video receive path: frames go to the decoder the moment they are complete.

`FastVideoReceive.install(receiver)` replaces one aiortc RTCRtpReceiver's packet handler (an
instance attribute: nothing is patched globally) with one that does what aiortc's does,
except assembling frames: receiver-report statistics, RTX unwrapping, depayloading and the
hand-off to aiortc's decoder thread stay aiortc's; frame assembly, NACK and keyframe requests
are peers.jitter's. Two things are left out on purpose: the REMB estimate (Rebound's server
holds its bitrate and ignores REMB; the estimator was the most expensive per-packet step) and
the synchronization-source bookkeeping (unused).

The receiver's private state is reached through peers.aiortc_internals (version-pinned).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from aiortc import RTCRtpReceiver
from aiortc.codecs import depayload, is_rtx
from aiortc.codecs.h264 import H264PayloadDescriptor
from aiortc.codecs.vpx import VpxPayloadDescriptor
from aiortc.jitterbuffer import JitterFrame
from aiortc.rtcrtpreceiver import StreamStatistics
from aiortc.rtp import (
    RTCP_PSFB_PLI,
    RTCP_RTPFB_NACK,
    RtcpPsfbPacket,
    RtcpRtpfbPacket,
    RtpPacket,
    unwrap_rtx,
)

from peers import aiortc_internals
from peers.jitter import AssembledFrame, FrameAssembler, NackTracker

log = logging.getLogger("rebound.receive")

TICK_S = 0.01
"""How often the timer re-requests packets and checks waits between packets."""
MAX_STREAMS = 4
"""SSRCs kept for receiver reports (media + RTX; more is not a conforming sender)."""
H264_START_NALS = frozenset({7, 9})
"""SPS or access-unit delimiter first in a packet: the first packet of an access unit."""
H264_KEY_NALS = frozenset({5, 7})
NAL_STAP_A = 24
NAL_FU_A = 28


def vp8_parse(payload: bytes) -> tuple[bytes, bool, bool]:
    """(frame data, starts a frame, starts a keyframe) of a VP8 RTP payload (RFC 7741)."""
    descriptor, data = VpxPayloadDescriptor.parse(payload)
    starts = bool(descriptor.partition_start) and descriptor.partition_id == 0
    return data, starts, starts and len(data) > 0 and data[0] & 1 == 0


def h264_nal_types(payload: bytes) -> list[int]:
    """NAL unit types an H264 RTP payload carries (RFC 6184; FU-A: only its first fragment)."""
    if not payload:
        return []
    nal = payload[0] & 0x1F
    if nal == NAL_FU_A:
        return [payload[1] & 0x1F] if len(payload) > 1 and payload[1] & 0x80 else []
    if nal != NAL_STAP_A:
        return [nal]
    types, pos = [], 1
    while pos + 2 < len(payload):
        size = int.from_bytes(payload[pos : pos + 2], "big")
        types.append(payload[pos + 2] & 0x1F)
        pos += 2 + size
    return types


def h264_parse(payload: bytes) -> tuple[bytes, bool, bool]:
    """(Annex-B data, starts an access unit, part of a keyframe) of an H264 RTP payload."""
    _, data = H264PayloadDescriptor.parse(payload)
    types = h264_nal_types(payload)
    starts = bool(types) and types[0] in H264_START_NALS
    return data, starts, any(t in H264_KEY_NALS for t in types)


PARSERS: dict[str, Callable[[bytes], tuple[bytes, bool, bool]]] = {
    "vp8": vp8_parse,
    "h264": h264_parse,
}


class FastVideoReceive:
    """The replacement packet handler of one video receiver (see the module docstring)."""

    def __init__(self, receiver: RTCRtpReceiver, clock: Callable[[], float] = time.monotonic):
        self.receiver = receiver
        self.clock = clock
        self.state = aiortc_internals.receiver_state(receiver)
        self.assembler = FrameAssembler()
        self.nacks = NackTracker()
        self.unparsable = 0
        self._given_up = 0
        self._media_ssrc: int | None = None
        self._codec: Any = None
        self._timer: asyncio.Future[None] | None = None

    @classmethod
    def install(cls, receiver: RTCRtpReceiver) -> FastVideoReceive:
        """Take over `receiver`'s RTP packets (before its transport delivers any), and start
        the timer that re-requests packets and ends waits between packets (`stop()` ends it)."""
        handler = cls(receiver)
        receiver._handle_rtp_packet = handler.handle  # type: ignore[method-assign]
        handler._timer = asyncio.ensure_future(handler._tick_every(TICK_S))
        return handler

    def stop(self) -> None:
        """Stop the timer (the receiver itself is aiortc's to stop)."""
        if self._timer is not None:
            self._timer.cancel()

    @property
    def incomplete(self) -> int:
        """Frames given up (never decoded)."""
        return self.assembler.given_up

    async def handle(self, packet: RtpPacket, arrival_time_ms: int) -> None:
        """One RTP packet from the transport (aiortc calls this for every packet)."""
        if not self.receiver._enabled:
            return
        codecs: dict[int, Any] = self.state["codecs"]
        codec = codecs.get(packet.payload_type)
        if codec is None:
            return
        streams: dict[int, StreamStatistics] = self.state["remote_streams"]
        stream = streams.get(packet.ssrc)
        if stream is None and len(streams) < MAX_STREAMS:
            stream = streams[packet.ssrc] = StreamStatistics(codec.clockRate)
        if stream is not None:
            stream.add(packet)
        if is_rtx(codec):
            original_ssrc = self.state["rtx_ssrc"].get(packet.ssrc)
            apt = codec.parameters.get("apt")
            if original_ssrc is None or len(packet.payload) < 2 or apt not in codecs:
                return
            packet = unwrap_rtx(packet, payload_type=apt, ssrc=original_ssrc)
            codec = codecs[apt]
        now = self.clock()
        self._media_ssrc, self._codec = packet.ssrc, codec
        self.nacks.on_packet(packet.sequence_number, now)
        try:
            data, starts, keyframe = self._parse(codec, packet.payload)
        except (ValueError, IndexError):
            self.unparsable += 1
        else:
            assembler = self.assembler
            assembler.max_wait_s = self.nacks.wait_s(assembler.frame_interval_s)
            self._decode(
                assembler.add(
                    packet.sequence_number,
                    packet.timestamp,
                    bool(packet.marker),
                    data,
                    now,
                    starts_frame=starts,
                    keyframe=keyframe,
                )
            )
        await self._feedback(packet.ssrc, now)

    async def _tick_every(self, interval_s: float) -> None:
        """Between packets: re-request what is still missing, end waits that ran out."""
        while True:
            await asyncio.sleep(interval_s)
            if self._media_ssrc is None or not self.receiver._enabled:
                continue
            now = self.clock()
            try:
                self._decode(self.assembler.poll(now))
                await self._feedback(self._media_ssrc, now)
            except Exception:  # never let the timer die; the next packet retries
                log.debug("receive timer failed", exc_info=True)

    def _decode(self, frames: list[AssembledFrame]) -> None:
        """Hand released frames to aiortc's decoder thread (if it runs)."""
        assembler = self.assembler
        if frames and aiortc_internals.decoder_thread_running(self.receiver):
            mapper, decoder_queue = self.state["timestamp_mapper"], self.state["decoder_queue"]
            for frame in frames:
                timestamp = mapper.map(frame.timestamp % (1 << 32))
                decoder_queue.put((self._codec, JitterFrame(frame.data, timestamp)))
        if frames or assembler.given_up != self._given_up:
            self._given_up = assembler.given_up
            self.nacks.forget_through(assembler.released_through)

    @staticmethod
    def _parse(codec: Any, payload: bytes) -> tuple[bytes, bool, bool]:
        if not payload:
            return b"", False, False
        parse = PARSERS.get(codec.name.lower())
        if parse is None:
            return depayload(codec, payload), False, False
        return parse(payload)

    async def _feedback(self, media_ssrc: int, now: float) -> None:
        lost = self.nacks.due(now, self.assembler.max_wait_s)
        if lost:
            nack = RtcpRtpfbPacket(
                fmt=RTCP_RTPFB_NACK, ssrc=self._rtcp_ssrc(), media_ssrc=media_ssrc
            )
            nack.lost = lost
            await self._send(nack)
        error: Any = self.state["decoder_error"]
        decoder_failed = error.is_set()
        if decoder_failed:
            error.clear()
        if self.assembler.keyframe_request(now) or decoder_failed:
            pli = RtcpPsfbPacket(fmt=RTCP_PSFB_PLI, ssrc=self._rtcp_ssrc(), media_ssrc=media_ssrc)
            await self._send(pli)

    def _rtcp_ssrc(self) -> int:
        return int(aiortc_internals.receiver_private(self.receiver, "rtcp_ssrc") or 0)

    async def _send(self, packet: Any) -> None:
        await self.receiver._send_rtcp(packet)
