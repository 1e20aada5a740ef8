"""Frame assembly and NACK timing (pure), and the codec hints the receive path reads."""

from dataclasses import dataclass

import pytest
from aiortc.codecs.h264 import H264Encoder
from aiortc.codecs.vpx import Vp8Encoder

from peers import jitter
from peers.jitter import FrameAssembler, NackTracker, unwrap
from peers.receive import h264_nal_types, h264_parse, vp8_parse

TICK = 3000  # RTP timestamp step of one frame at 30 fps


@dataclass
class Pkt:
    seq: int
    ts: int
    marker: bool
    data: bytes
    start: bool = False
    key: bool = False


def frame_packets(first_seq: int, ts: int, count: int, *, key: bool = False) -> list[Pkt]:
    """`count` packets of one frame; the first carries the codec's start hint (as VP8's do)."""
    return [
        Pkt(
            (first_seq + i) % 65536,
            ts % 2**32,
            i == count - 1,
            bytes([ts // TICK % 256, i]),
            start=i == 0,
            key=key,
        )
        for i in range(count)
    ]


def feed(assembler: FrameAssembler, packets: list[Pkt], now: float = 0.0) -> list[bytes]:
    out = []
    for p in packets:
        frames = assembler.add(
            p.seq, p.ts, p.marker, p.data, now, starts_frame=p.start, keyframe=p.key
        )
        out += [f.data for f in frames]
    return out


def stream(frames: int, per_frame: int = 3, seq0: int = 100, ts0: int = 0) -> list[list[Pkt]]:
    return [
        frame_packets(seq0 + i * per_frame, ts0 + i * TICK, per_frame, key=i == 0)
        for i in range(frames)
    ]


def test_a_frame_is_released_by_its_own_marker_packet() -> None:
    assembler = FrameAssembler()
    frames = stream(3)
    assert feed(assembler, frames[0][:-1]) == []
    assert feed(assembler, frames[0][-1:]) == [b"\x00\x00\x00\x01\x00\x02"]
    assert feed(assembler, frames[1]) == [b"\x01\x00\x01\x01\x01\x02"]
    assert assembler.pending_packets == 0 and assembler.released == 2


def test_without_a_start_hint_the_previous_frames_end_marks_the_start() -> None:
    assembler = FrameAssembler()
    frames = stream(3)
    for packets in frames[1:]:
        for p in packets:
            p.start = False  # H264 delta frames carry no start hint
    released = feed(assembler, frames[0] + frames[1] + frames[2])
    assert len(released) == 3


def test_a_hole_holds_later_frames_until_the_retransmission_fills_it() -> None:
    assembler = FrameAssembler()
    frames = stream(4)
    lost = frames[1][1]
    assert len(feed(assembler, frames[0])) == 1
    assert feed(assembler, [p for p in frames[1] if p is not lost] + frames[2] + frames[3]) == []
    assert assembler.pending_frames == 3
    assert len(feed(assembler, [lost], now=0.02)) == 3  # in order, at once
    assert assembler.given_up == 0


def test_a_packet_that_never_comes_costs_frames_until_a_keyframe_never_seconds() -> None:
    assembler = FrameAssembler()
    assembler.max_wait_s = 0.1
    frames = stream(6)
    frames[4] = frame_packets(frames[4][0].seq, frames[4][0].ts, 3, key=True)
    feed(assembler, frames[0])
    feed(assembler, frames[1][:1] + frames[1][2:] + frames[2] + frames[3], now=0.01)
    assert not assembler.keyframe_request(0.05)
    assert assembler.poll(0.05) == []
    assert assembler.poll(0.12) == []  # frame 1 given up; 2 and 3 cannot be decoded
    assert assembler.given_up == 3 and assembler.pending_frames == 0
    assert assembler.keyframe_request(0.12)
    assert not assembler.keyframe_request(0.13)  # rate limited
    assert assembler.keyframe_request(0.12 + jitter.KEYFRAME_RETRY_S)
    assert len(feed(assembler, frames[4] + frames[5], now=0.2)) == 2
    assert not assembler.keyframe_request(1.0)


def test_a_frame_lost_whole_holds_the_next_one_it_is_the_reference_of() -> None:
    assembler = FrameAssembler()
    assembler.max_wait_s = 0.1
    frames = stream(4, per_frame=1)  # small frames: one packet each, every one a start
    feed(assembler, frames[0])
    assert feed(assembler, frames[2] + frames[3], now=0.01) == []  # frame 1 never came
    assert len(feed(assembler, frames[1], now=0.02)) == 3  # its retransmission did
    frames = stream(4, per_frame=1, seq0=200, ts0=100 * TICK)
    late = FrameAssembler()
    late.max_wait_s = 0.1
    feed(late, frames[0])
    feed(late, frames[2] + frames[3], now=0.01)
    assert late.poll(0.2) == [] and late.given_up == 2
    assert late.keyframe_request(0.2)


def test_a_complete_keyframe_behind_a_stuck_frame_releases_at_once() -> None:
    assembler = FrameAssembler()
    frames = stream(4)
    frames[3] = frame_packets(frames[3][0].seq, frames[3][0].ts, 3, key=True)
    feed(assembler, frames[0])
    assert feed(assembler, frames[1][1:] + frames[2]) == []
    assert len(feed(assembler, frames[3], now=0.001)) == 1
    assert assembler.given_up == 2


def test_late_and_duplicate_packets_change_nothing() -> None:
    assembler = FrameAssembler()
    frames = stream(3)
    feed(assembler, frames[0] + frames[1])
    assert feed(assembler, frames[0][1:2] + frames[1]) == []
    assert assembler.late_packets == 4
    feed(assembler, frames[2][:1])
    assert feed(assembler, frames[2][:1]) == []
    assert assembler.late_packets == 5
    assert len(feed(assembler, frames[2][1:])) == 1


def test_packets_beyond_a_frames_marker_are_not_part_of_it() -> None:
    assembler = FrameAssembler()
    frames = stream(1)
    feed(assembler, frames[0][:1] + frames[0][2:])  # marker packet, hole before it
    stray = Pkt(frames[0][2].seq + 1, frames[0][0].ts, False, b"zz")
    assert feed(assembler, [stray]) == []
    assert assembler.late_packets == 1
    assert feed(assembler, frames[0][1:2]) == [b"\x00\x00\x00\x01\x00\x02"]


@pytest.mark.parametrize(("seq0", "ts0"), [(65534, 0), (100, 2**32 - TICK)])
def test_sequence_numbers_and_timestamps_wrap(seq0: int, ts0: int) -> None:
    assembler = FrameAssembler()
    packets = [p for f in stream(4, seq0=seq0, ts0=ts0) for p in f]
    for p in packets:
        p.seq %= 65536
        p.ts %= 2**32
    assert len(feed(assembler, packets)) == 4
    assert assembler.given_up == 0


def test_nothing_piles_up_whatever_arrives() -> None:
    assembler = FrameAssembler()
    assembler.max_wait_s = 3600.0  # only the bounds can help
    seq = 0
    for i in range(500):  # frames whose first packet is always lost
        for p in frame_packets(seq, i * TICK, 4)[1:]:
            assembler.add(p.seq, p.ts, p.marker, p.data, 0.0)
        seq += 4
        assert assembler.pending_frames <= jitter.MAX_PENDING_FRAMES
    assert assembler.given_up >= 500 - jitter.MAX_PENDING_FRAMES - 1
    big = FrameAssembler()
    big.max_wait_s = 3600.0
    for s in range(5000):  # one frame that never ends
        big.add(s, 0, False, b"x", 0.0)
        assert big.pending_packets <= jitter.MAX_PENDING_PACKETS + 1


def test_a_jump_in_sequence_numbers_restarts_assembly() -> None:
    assembler = FrameAssembler()
    feed(assembler, stream(2)[0])
    restarted = stream(2, seq0=40_000, ts0=90_000 * 100)
    assert len(feed(assembler, restarted[0] + restarted[1])) == 2
    assert assembler.resets == 1


def test_unwrap() -> None:
    assert unwrap(5, 16, None) == 5
    assert unwrap(2, 16, 65530) == 65538
    assert unwrap(65530, 16, 65538) == 65530
    assert unwrap(10, 32, 2**32 + 5) == 2**32 + 10


def test_nacks_ask_at_once_then_after_a_round_trip() -> None:
    nacks = NackTracker()
    nacks.on_packet(10, 0.0)
    nacks.on_packet(14, 0.001)
    assert nacks.due(0.001, 0.1) == [11, 12, 13]
    assert nacks.due(0.002, 0.1) == []
    nacks.on_packet(12, 0.005)  # a retransmission 4 ms after the NACK
    assert nacks.rtt_s == pytest.approx(0.004)
    assert nacks.due(0.012, 0.1) == [11, 13]  # asked again after max(10 ms, 1.5 rtt)
    assert nacks.due(0.2, 0.1) == []  # too old: their frame is gone
    assert nacks.missing == 0


def test_nacks_stop_after_the_frame_is_given_up_and_after_max_tries() -> None:
    nacks = NackTracker()
    nacks.on_packet(65534, 0.0)
    nacks.on_packet(3, 0.0)  # wraps: 65535, 0, 1, 2 missing
    assert nacks.due(0.0, 10.0) == [65535, 0, 1, 2]
    nacks.forget_through(65536)  # unwrapped 0
    assert nacks.due(1.0, 10.0) == [1, 2]
    for i in range(2, jitter.MAX_NACKS_PER_PACKET + 2):
        nacks.due(float(i), 10.0)
    assert nacks.missing == 0


def test_the_wait_follows_the_frame_interval_and_round_trip_within_bounds() -> None:
    nacks = NackTracker()
    assert nacks.wait_s(None) == jitter.MIN_WAIT_S
    at_30fps = nacks.wait_s(1 / 30)
    assert at_30fps == pytest.approx(1 / 30 + jitter.WAIT_RETRIES * jitter.RETRY_S)
    nacks.rtt_s = 0.02
    assert at_30fps < nacks.wait_s(1 / 30) < jitter.MAX_WAIT_S
    nacks.rtt_s = 10.0
    assert nacks.wait_s(1 / 30) == jitter.MAX_WAIT_S
    assert NackTracker().wait_s(1 / 2) == jitter.MAX_WAIT_S


def test_the_frame_interval_is_learnt_from_released_frames() -> None:
    assembler = FrameAssembler()
    assert assembler.frame_interval_s is None
    feed(assembler, [p for f in stream(20) for p in f])
    assert assembler.frame_interval_s == pytest.approx(1 / 30)


def test_missing_packets_are_bounded() -> None:
    nacks = NackTracker()
    nacks.on_packet(0, 0.0)
    nacks.on_packet(2999, 0.0)
    assert nacks.missing == jitter.MAX_MISSING
    assert len(nacks.due(0.0, 1.0)) == jitter.NACK_BATCH


def test_vp8_hints_come_from_the_payload_descriptor_and_frame_tag() -> None:
    keyframe = bytes([0x10, 0x02, 0x00, 0x9D, 0x01, 0x2A]) + b"k" * 3000  # P bit 0: key
    delta = bytes([0x11]) + b"d" * 3000
    key_packets = Vp8Encoder._packetize(keyframe, 7)
    delta_packets = Vp8Encoder._packetize(delta, 8)
    assert vp8_parse(key_packets[0])[1:] == (True, True)
    assert vp8_parse(key_packets[1])[1:] == (False, False)
    assert vp8_parse(delta_packets[0])[1:] == (True, False)
    assert b"".join(vp8_parse(p)[0] for p in key_packets) == keyframe


def test_h264_hints_come_from_the_nal_unit_types() -> None:
    sps, pps = bytes([0x67, 0x42, 0x00, 0x1F]), bytes([0x68, 0xCE, 0x3C, 0x80])
    idr = bytes([0x65]) + b"i" * 3000
    key_packets = H264Encoder._packetize([sps, pps, idr])
    assert h264_nal_types(key_packets[0]) == [7, 8]  # STAP-A
    assert h264_parse(key_packets[0])[1:] == (True, True)
    assert h264_nal_types(key_packets[1]) == [5]  # FU-A start
    assert h264_parse(key_packets[2])[1:] == (False, False)  # FU-A middle
    delta = H264Encoder._packetize([bytes([0x41]) + b"p" * 100])
    assert h264_parse(delta[0])[1:] == (False, False)
    assert h264_nal_types(b"") == [] and h264_nal_types(bytes([0x18, 0xFF])) == []
