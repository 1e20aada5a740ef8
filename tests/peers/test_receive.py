"""The client's replacement packet handler on a real aiortc RTCRtpReceiver: what it hands to
the decoder, and what hostile packets do (nothing but counters)."""

import asyncio
import queue
from collections.abc import Iterator

import pytest
from aiortc import (
    RTCCertificate,
    RTCDtlsTransport,
    RTCIceGatherer,
    RTCIceTransport,
    RTCRtpReceiver,
)
from aiortc.codecs.vpx import Vp8Encoder
from aiortc.rtcrtpparameters import RTCRtpCodecParameters
from aiortc.rtp import RtcpPsfbPacket, RtcpRtpfbPacket, RtpPacket

from peers import aiortc_internals
from peers.receive import FastVideoReceive

VP8 = RTCRtpCodecParameters(mimeType="video/VP8", clockRate=90000, payloadType=97)
H264 = RTCRtpCodecParameters(mimeType="video/H264", clockRate=90000, payloadType=99)


class Clock:
    now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def receiver() -> Iterator[RTCRtpReceiver]:
    """A real video receiver whose timer (if installed) is stopped after the test."""
    ice = RTCIceTransport(RTCIceGatherer())
    dtls = RTCDtlsTransport(ice, [RTCCertificate.generateCertificate()])
    receiver = RTCRtpReceiver("video", dtls)
    codecs = aiortc_internals.receiver_state(receiver)["codecs"]
    codecs[VP8.payloadType] = VP8
    codecs[H264.payloadType] = H264
    yield receiver
    handler = getattr(receiver._handle_rtp_packet, "__self__", None)
    if isinstance(handler, FastVideoReceive):
        handler.stop()


def decoding(receiver: RTCRtpReceiver) -> "queue.Queue[object]":
    """Pretend aiortc's decoder thread runs; its input queue is what we inspect."""
    receiver._RTCRtpReceiver__decoder_thread = object()  # type: ignore[attr-defined]
    return aiortc_internals.receiver_state(receiver)["decoder_queue"]  # type: ignore[no-any-return]


def rtp(seq: int, ts: int, payload: bytes, marker: bool, pt: int = 97) -> RtpPacket:
    packet = RtpPacket(payload_type=pt, sequence_number=seq, timestamp=ts, marker=int(marker))
    packet.ssrc = 1234
    packet.payload = payload
    return packet


async def test_vp8_frames_reach_the_decoder_at_their_marker_packet(
    receiver: RTCRtpReceiver,
) -> None:
    decoder = decoding(receiver)
    handler = FastVideoReceive.install(receiver)
    assert receiver._handle_rtp_packet == handler.handle  # the instance's, not the class's
    keyframe = bytes([0x10, 0x02, 0x00, 0x9D, 0x01, 0x2A]) + bytes(3000)
    payloads = Vp8Encoder._packetize(keyframe, 1)
    for i, payload in enumerate(payloads):
        await handler.handle(rtp(500 + i, 9000, payload, i == len(payloads) - 1), 0)
        assert decoder.qsize() == (1 if i == len(payloads) - 1 else 0)
    codec, frame = decoder.get_nowait()  # type: ignore[misc]
    assert codec is VP8 and frame.data == keyframe
    stats = aiortc_internals.receiver_state(receiver)["remote_streams"][1234]
    assert stats.packets_received == len(payloads)  # receiver reports still counted


@pytest.mark.parametrize(
    ("payload", "unparsable"),
    [
        (b"", 0),
        (b"\x80", 40),  # VP8 descriptor cut short
        (b"\x90\x80", 40),  # picture id missing
        (bytes(2000), 0),  # no frame start ever: nothing complete
        (b"\xff" * 1400, 0),  # partition 15, never a start
    ],
)
async def test_malformed_vp8_payloads_never_reach_the_decoder(
    receiver: RTCRtpReceiver, payload: bytes, unparsable: int
) -> None:
    decoder = decoding(receiver)
    handler = FastVideoReceive.install(receiver)
    for seq in range(40):
        await handler.handle(rtp(seq, seq // 2 * 3000, payload, seq % 2 == 1), 0)
    assert decoder.qsize() == 0
    assert handler.unparsable == unparsable
    assert handler.assembler.pending_packets <= 40


@pytest.mark.parametrize(
    ("payload", "unparsable", "decoded"),
    [
        (b"\x1c", 20, 0),  # FU-A without its header
        (b"\x18\x00\xff\x67", 20, 0),  # STAP-A whose NAL runs past the end
        (b"\x1f\x00", 20, 0),  # NAL type 31
        (b"\x18" * 1300, 20, 0),
        # IDR fragments: well-formed, the decoder judges them; the first has no provable start
        (b"\x1c\x85" + bytes(100), 0, 19),
    ],
)
async def test_malformed_h264_payloads_are_counted_and_ignored(
    receiver: RTCRtpReceiver, payload: bytes, unparsable: int, decoded: int
) -> None:
    decoder = decoding(receiver)
    handler = FastVideoReceive.install(receiver)
    for seq in range(20):
        await handler.handle(rtp(seq, seq * 3000, payload, True, pt=99), 0)
    assert handler.unparsable == unparsable
    assert decoder.qsize() == decoded


async def test_unknown_payload_types_and_a_flood_hold_nothing(receiver: RTCRtpReceiver) -> None:
    clock = Clock()
    handler = FastVideoReceive(receiver, clock)
    receiver._handle_rtp_packet = handler.handle  # type: ignore[method-assign]
    await handler.handle(rtp(1, 0, b"\x10abc", True, pt=50), 0)
    assert handler.assembler.pending_packets == 0
    for seq in range(20_000):  # frames whose last packet never comes
        clock.now = seq / 1000
        await handler.handle(rtp(seq % 65536, (seq // 10) * 3000, b"\x00junk", False), 0)
    assert handler.assembler.pending_packets <= 2048 + 1
    assert handler.assembler.pending_frames <= 64 + 1
    assert handler.nacks.missing == 0


async def test_the_timer_asks_again_for_a_lost_packet_while_nothing_arrives(
    receiver: RTCRtpReceiver,
) -> None:
    sent: list[object] = []

    async def record(packet: object) -> None:
        sent.append(packet)

    receiver._send_rtcp = record  # type: ignore[method-assign]
    handler = FastVideoReceive.install(receiver)
    payloads = Vp8Encoder._packetize(bytes([0x10, 0x02, 0, 0x9D, 1, 0x2A]) + bytes(3000), 1)
    await handler.handle(rtp(100, 0, payloads[0], False), 0)
    await handler.handle(rtp(102, 0, payloads[2], True), 0)  # 101 lost, then silence
    await asyncio.sleep(0.1)
    nacks = [p for p in sent if isinstance(p, RtcpRtpfbPacket)]
    assert len(nacks) >= 3 and all(p.lost == [101] for p in nacks)
    assert handler.assembler.given_up == 1  # the wait ran out without another packet
    assert any(isinstance(p, RtcpPsfbPacket) for p in sent)  # and a keyframe was asked for
