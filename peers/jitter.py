"""Video frame assembly for the receiver: release a frame the moment it is complete. Pure.

aiortc's jitter buffer releases a frame only when a packet of the *next* frame arrives (one
frame interval of latency on every frame), and under loss it waits for a missing packet until
512 packets pile up behind it (seconds). `FrameAssembler` instead:

- releases a frame as soon as its packets are all there: the marker packet (the frame's last)
  and every sequence number back to a known frame start (a packet the codec marks as a start,
  or the packet after the previous frame's last one); a delta frame also needs the frame
  before it (no sequence numbers missing since the last frame released), a keyframe nothing;
- releases frames in timestamp order (a decoder needs its references), so a frame waits only
  for frames before it, and never longer than `max_wait_s` after its first packet arrived:
  then the incomplete frame is given up, counted, and everything up to the next complete
  keyframe is dropped (a VP8/H264 delta frame cannot be decoded without its reference), with a
  keyframe request (PLI) repeated every KEYFRAME_RETRY_S until one arrives;
- holds at most MAX_PENDING_FRAMES frames / MAX_PENDING_PACKETS packets: beyond that the
  oldest frame is given up at once, so nothing queues for seconds, whatever arrives.

`NackTracker` decides which missing packets to ask for again (RTCP NACK), re-asking while the
frame that needs them can still be released, and estimates the round trip from how fast a
retransmission answers; the assembler's wait follows that estimate and the frame interval,
within bounds.

Sequence numbers and timestamps are unwrapped to unbounded integers (16 and 32 bits on the
wire), so the logic never sees a wrap.
"""

from __future__ import annotations

from dataclasses import dataclass, field

SEQ_BITS = 16
TS_BITS = 32
MAX_PENDING_FRAMES = 64
MAX_PENDING_PACKETS = 2048
MAX_JUMP = 3000
"""A sequence number this far from the newest one restarts assembly (a reset stream)."""
MIN_WAIT_S = 0.06
MAX_WAIT_S = 0.4
"""Bounds of how long an incomplete frame may hold back the frames after it."""
RETRY_S = 0.01
"""Least time between two NACKs of one packet (more often when the round trip is longer)."""
WAIT_RETRIES = 3
WAIT_RTTS = 4
"""Beyond one frame interval (a lost last packet shows only when the next frame arrives),
the wait covers WAIT_RETRIES re-requests and WAIT_RTTS round trips."""
RTP_CLOCK_HZ = 90_000
KEYFRAME_RETRY_S = 0.25
MAX_NACKS_PER_PACKET = 8
MAX_MISSING = 1024
NACK_BATCH = 128
"""Sequence numbers in one NACK packet at most."""


def unwrap(value: int, bits: int, reference: int | None) -> int:
    """`value` (mod 2**bits) as the integer nearest to `reference` (None: value itself)."""
    if reference is None:
        return value
    modulus = 1 << bits
    delta = (value - reference) % modulus
    if delta >= modulus // 2:
        delta -= modulus
    return reference + delta


@dataclass(frozen=True)
class AssembledFrame:
    """A complete encoded frame: RTP timestamp (unwrapped), payload data, keyframe or not."""

    timestamp: int
    data: bytes
    keyframe: bool


@dataclass
class _Packet:
    timestamp: int
    data: bytes


@dataclass
class _Slot:
    """The packets seen so far of one frame (one RTP timestamp)."""

    first_seen: float
    seqs: set[int] = field(default_factory=set)
    end: int | None = None
    start_hint: int | None = None
    keyframe: bool = False


class FrameAssembler:
    """Turns RTP packets (depayloaded) into complete frames, in order, without waiting for
    the next frame and without unbounded waiting under loss (see the module docstring)."""

    def __init__(self) -> None:
        self._packets: dict[int, _Packet] = {}
        self._slots: dict[int, _Slot] = {}
        self._max_seq: int | None = None
        self._max_ts: int | None = None
        self._done_ts: int | None = None
        self._done_end: int | None = None
        self._complete_keyframes: set[int] = set()
        self._waiting_keyframe = True
        self._requested_at: float | None = None
        self._request_due = False
        self.max_wait_s = MIN_WAIT_S
        self.released = 0
        self.given_up = 0
        """Frames never released: incomplete within the wait, or undecodable (no keyframe)."""
        self.late_packets = 0
        self.resets = 0
        self.frame_interval_s: float | None = None
        """Smoothed timestamp step between consecutive frames released, in seconds."""

    @property
    def pending_frames(self) -> int:
        """Frames held now."""
        return len(self._slots)

    @property
    def pending_packets(self) -> int:
        """Packets held now."""
        return len(self._packets)

    @property
    def released_through(self) -> int | None:
        """The last sequence number of the last frame released or given up (if known)."""
        return self._done_end

    def add(
        self,
        seq: int,
        timestamp: int,
        marker: bool,
        data: bytes,
        now: float,
        *,
        starts_frame: bool = False,
        keyframe: bool = False,
    ) -> list[AssembledFrame]:
        """Take one packet; return the frames that are now ready to decode, in order.

        `starts_frame` / `keyframe`: what the codec payload says about this packet (the first
        packet of a frame / part of a keyframe); False when it cannot tell.
        """
        ext_seq = unwrap(seq, SEQ_BITS, self._max_seq)
        ext_ts = unwrap(timestamp, TS_BITS, self._max_ts)
        if self._max_seq is not None and abs(ext_seq - self._max_seq) > MAX_JUMP:
            self._reset()
            ext_seq, ext_ts = seq, timestamp
        if self._is_late(ext_seq, ext_ts) or ext_seq in self._packets:
            self.late_packets += 1
            return self._release(now)
        if self._max_seq is None or ext_seq > self._max_seq:
            self._max_seq = ext_seq
        if self._max_ts is None or ext_ts > self._max_ts:
            self._max_ts = ext_ts
        slot = self._slots.get(ext_ts)
        if slot is None:
            slot = self._slots[ext_ts] = _Slot(first_seen=now)
        if slot.end is not None and ext_seq > slot.end:
            self.late_packets += 1  # beyond the frame's marker packet: not part of it
            return self._release(now)
        self._packets[ext_seq] = _Packet(ext_ts, data)
        slot.seqs.add(ext_seq)
        if marker:
            slot.end = ext_seq
        if starts_frame:
            slot.start_hint = ext_seq
        slot.keyframe = slot.keyframe or keyframe
        if slot.keyframe and self._start_of(ext_ts, slot) is not None:
            self._complete_keyframes.add(ext_ts)
        return self._release(now)

    def poll(self, now: float) -> list[AssembledFrame]:
        """Frames ready now (deadlines pass without packets too)."""
        return self._release(now)

    def keyframe_request(self, now: float) -> bool:
        """True when a keyframe should be requested (PLI) now; repeats every
        KEYFRAME_RETRY_S while frames are being dropped for want of one."""
        if not self._request_due:
            return False
        if self._requested_at is not None and now - self._requested_at < KEYFRAME_RETRY_S:
            return False
        self._requested_at = now
        return True

    # ---- internals --------------------------------------------------------------------

    def _is_late(self, ext_seq: int, ext_ts: int) -> bool:
        if self._done_ts is not None and ext_ts <= self._done_ts:
            return True
        return self._done_end is not None and ext_seq <= self._done_end

    def _start_of(self, ts: int, slot: _Slot) -> int | None:
        """The first sequence number of a complete frame, or None while it is incomplete."""
        if slot.end is None:
            return None
        start = slot.end
        while start - 1 in slot.seqs:
            start -= 1
        if min(slot.seqs) < start:
            return None  # a hole inside the frame
        if slot.start_hint == start or self._done_end == start - 1:
            return start
        before = self._packets.get(start - 1)
        return start if before is not None and before.timestamp != ts else None

    def _release(self, now: float) -> list[AssembledFrame]:
        ready: list[AssembledFrame] = []
        while self._slots:
            ts = min(self._slots)
            slot = self._slots[ts]
            start = self._start_of(ts, slot)
            if start is not None and self._waiting_keyframe and not slot.keyframe:
                self._give_up(ts, slot)  # complete, but its reference is gone
                continue
            # A delta frame must follow the last frame without a gap: a gap is a whole
            # frame (its reference) still missing.
            if start is not None and (slot.keyframe or start - 1 == self._done_end):
                assert slot.end is not None
                data = b"".join(self._packets[s].data for s in range(start, slot.end + 1))
                ready.append(AssembledFrame(ts, data, slot.keyframe))
                self._finish(ts, slot)
                self._waiting_keyframe = False
                self._request_due = False
                self.released += 1
                continue
            if self._must_give_up(ts, slot, now):
                self._give_up(ts, slot)
                continue
            break
        return ready

    def _must_give_up(self, ts: int, slot: _Slot, now: float) -> bool:
        return (
            now - slot.first_seen >= self.max_wait_s
            or any(k > ts for k in self._complete_keyframes)
            or len(self._slots) > MAX_PENDING_FRAMES
            or len(self._packets) > MAX_PENDING_PACKETS
        )

    def _give_up(self, ts: int, slot: _Slot) -> None:
        self._finish(ts, slot)
        self.given_up += 1
        self._waiting_keyframe = True
        self._request_due = True

    def _finish(self, ts: int, slot: _Slot) -> None:
        if self._done_ts is not None and 0 < ts - self._done_ts <= RTP_CLOCK_HZ:
            step = (ts - self._done_ts) / RTP_CLOCK_HZ
            previous = self.frame_interval_s
            self.frame_interval_s = step if previous is None else 0.9 * previous + 0.1 * step
        for seq in slot.seqs:
            self._packets.pop(seq, None)
        del self._slots[ts]
        self._complete_keyframes.discard(ts)
        self._done_ts = ts
        self._done_end = slot.end

    def _reset(self) -> None:
        self.given_up += len(self._slots)
        self._packets.clear()
        self._slots.clear()
        self._complete_keyframes.clear()
        self._max_seq = self._max_ts = self._done_ts = self._done_end = None
        self._waiting_keyframe = True
        self._request_due = True
        self.resets += 1


@dataclass
class _Missing:
    since: float
    nacked_at: float | None = None
    nacks: int = 0


class NackTracker:
    """Which lost packets to ask for (RTCP NACK), and when to ask again."""

    def __init__(self) -> None:
        self._missing: dict[int, _Missing] = {}
        self._max_seq: int | None = None
        self.rtt_s: float | None = None
        """Smoothed time from a NACK to the retransmission it asked for."""

    @property
    def missing(self) -> int:
        """Packets currently believed lost."""
        return len(self._missing)

    def on_packet(self, seq: int, now: float) -> None:
        """Note an arriving packet (an original or an unwrapped retransmission)."""
        ext = unwrap(seq, SEQ_BITS, self._max_seq)
        if self._max_seq is None or abs(ext - self._max_seq) > MAX_JUMP:
            self._missing.clear()
            self._max_seq = ext
            return
        if ext > self._max_seq:
            for lost in range(self._max_seq + 1, ext):
                self._missing[lost] = _Missing(since=now)
            self._max_seq = ext
            while len(self._missing) > MAX_MISSING:
                del self._missing[min(self._missing)]
            return
        found = self._missing.pop(ext, None)
        if found is not None and found.nacked_at is not None:
            sample = now - found.nacked_at
            self.rtt_s = sample if self.rtt_s is None else 0.8 * self.rtt_s + 0.2 * sample

    def forget_through(self, seq: int | None) -> None:
        """Stop asking for packets up to `seq` (unwrapped): their frame was given up."""
        if seq is None:
            return
        for lost in [s for s in self._missing if s <= seq]:
            del self._missing[lost]

    def due(self, now: float, give_up_after_s: float) -> list[int]:
        """Sequence numbers (16-bit) to NACK now: new losses at once, old ones again after
        about a round trip, none older than `give_up_after_s` or asked MAX_NACKS_PER_PACKET
        times."""
        retry_s = max(RETRY_S, 1.5 * (self.rtt_s or 0.0))
        batch: list[int] = []
        for seq in sorted(self._missing):
            entry = self._missing[seq]
            if now - entry.since > give_up_after_s or entry.nacks >= MAX_NACKS_PER_PACKET:
                del self._missing[seq]
                continue
            if entry.nacked_at is None or now - entry.nacked_at >= retry_s:
                entry.nacked_at = now
                entry.nacks += 1
                batch.append(seq % (1 << SEQ_BITS))
                if len(batch) >= NACK_BATCH:
                    break
        return batch

    def wait_s(self, frame_interval_s: float | None) -> float:
        """How long an incomplete frame may wait for retransmissions: a frame interval (a
        lost last packet shows only with the next frame), WAIT_RETRIES re-requests and
        WAIT_RTTS round trips, within MIN_WAIT_S..MAX_WAIT_S."""
        rtt = self.rtt_s or 0.0
        wanted = (frame_interval_s or 0.0) + WAIT_RETRIES * max(RETRY_S, 1.5 * rtt)
        return min(MAX_WAIT_S, max(MIN_WAIT_S, wanted + WAIT_RTTS * rtt))
