"""Keep a hostile data-channel peer from killing aiortc's transport; advertise our size limit.

Where aiortc breaks (1.16, `aiortc/rtcsctptransport.py`): `RTCSctpTransport._data_channel_receive`
turns a string message (PPID 51, WEBRTC_STRING) into text with `data.decode("utf8")`, asserts
on DCEP open/ack messages (`assert stream_id not in self._data_channels`), and emits
"message" to our handler (pyee re-raises a handler's exception). Any exception there goes up
through the SCTP receive path into `RTCDtlsTransport.__run`, which logs it and closes the DTLS
transport: media and data channel die together, and one message has ended the session.

Why a patch and not a subclass: `RTCPeerConnection` builds its `RTCSctpTransport` itself, with
no hook to substitute a class, so a subclass would need a patch of the connection anyway.
`install()` therefore wraps exactly four members of the class, once per process, and leaves
aiortc's behaviour unchanged for every message that would not have raised:

- `_data_channel_receive`: a user message (PPID 51 or 53) longer than `MAX_MESSAGE_BYTES` is
  cut to `MAX_MESSAGE_BYTES + 1` bytes and delivered as binary, so the decoder refuses it as
  `too_large` without decoding it; a string message that is not valid UTF-8 is delivered as
  binary (the decoder counts it `not_utf8`); any exception still raised (a malformed DCEP
  message, a handler) is counted in `dropped` and the message is dropped, never propagated.
- `getCapabilities`: advertises `MAX_MESSAGE_BYTES` as our SCTP max-message-size (the SDP's
  `a=max-message-size`), so a conforming peer refuses to send us more than we accept.
- `_receive_chunk`: an INIT chunk that arrives once the association is ESTABLISHED is dropped
  (counted `late_init`). aiortc handles every INIT as a collision at start-up and resets its
  receive state (`_last_received_tsn`) to the INIT's initial TSN; on an established association
  its SACKs then fall behind what the sender has seen acknowledged, the sender ignores them
  all, and after one congestion window the data channel stalls for good while media still
  flows. A late duplicate INIT (or a hostile one) must not do that; aiortc cannot restart an
  association anyway.
- `_receive_data_chunk`: what aiortc holds for reassembly is bounded. aiortc advertises a
  1 MiB receive window but never enforces it: a peer that sends fragments without a last
  one, or chunks beyond a gap that it never fills, makes it buffer without limit. A DATA
  chunk is dropped (not marked received, counted) when it carries no user data
  (`sctp_empty_data`, RFC 4960 6.2), opens a stream beyond `MAX_STREAMS`
  (`sctp_too_many_streams`), or would take the held data past `MAX_HELD_BYTES` or
  `MAX_HELD_CHUNKS` (`sctp_over_window`). To make room for a chunk that fills a gap, the
  highest out-of-order chunk held is given up first, as RFC 4960 6.2 describes (the
  sender retransmits it). A conforming peer never reaches these bounds: our messages are
  at most `MAX_MESSAGE_BYTES`, one chunk each, and are delivered as soon as they arrive in
  order.
"""

from __future__ import annotations

import logging
from collections import Counter
from typing import Any

from aiortc.rtcsctptransport import (
    WEBRTC_BINARY,
    WEBRTC_STRING,
    Chunk,
    DataChunk,
    InitChunk,
    RTCSctpCapabilities,
    RTCSctpTransport,
)
from aiortc.utils import uint32_gt

from peers.protocol import MAX_MESSAGE_BYTES

log = logging.getLogger("rebound.sctp")

dropped: Counter[str] = Counter()
"""Messages dropped because aiortc (or a handler) raised on them, by exception name."""

MAX_HELD_BYTES = 1024 * 1024
"""User data held for reassembly at most: the receive window aiortc advertises."""
MAX_HELD_CHUNKS = 2048
"""DATA chunks held for reassembly at most (each costs far more memory than its bytes)."""
MAX_STREAMS = 16
"""Inbound SCTP streams at most; the session uses one data channel (one stream)."""

_original_receive = RTCSctpTransport._data_channel_receive
_original_receive_chunk = RTCSctpTransport._receive_chunk
_original_receive_data_chunk = RTCSctpTransport._receive_data_chunk


def _is_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def screen(pp_id: int, data: bytes) -> tuple[int, bytes]:
    """The (PPID, payload) aiortc may safely deliver for a received user message."""
    if pp_id not in (WEBRTC_STRING, WEBRTC_BINARY):
        return pp_id, data
    if len(data) > MAX_MESSAGE_BYTES:
        return WEBRTC_BINARY, data[: MAX_MESSAGE_BYTES + 1]
    if pp_id == WEBRTC_STRING and not _is_utf8(data):
        return WEBRTC_BINARY, data
    return pp_id, data


async def _guarded_receive(self: RTCSctpTransport, stream_id: int, pp_id: int, data: bytes) -> None:
    pp_id, data = screen(pp_id, data)
    try:
        await _original_receive(self, stream_id, pp_id, data)
    except Exception as exc:  # anything left would close the DTLS transport
        dropped[type(exc).__name__] += 1
        log.debug("dropped a data-channel message that made aiortc raise %r", exc)


async def _guarded_receive_chunk(self: RTCSctpTransport, chunk: Chunk) -> None:
    if isinstance(chunk, InitChunk) and self._association_state == self.State.ESTABLISHED:
        dropped["late_init"] += 1
        return
    await _original_receive_chunk(self, chunk)


def _held(transport: RTCSctpTransport) -> tuple[int, int]:
    """(bytes, chunks) that `transport` holds for reassembly."""
    chunks = [c for stream in transport._inbound_streams.values() for c in stream.reassembly]
    return sum(len(c.user_data) for c in chunks), len(chunks)


def _give_up_highest_out_of_order(transport: RTCSctpTransport, below: int) -> bool:
    """Forget the highest-TSN chunk held beyond a gap if its TSN is above `below`, as if it
    had been lost (the sender retransmits it); False when there is none."""
    last = transport._last_received_tsn
    if last is None:
        return False
    highest: tuple[DataChunk, list[DataChunk]] | None = None
    for stream in transport._inbound_streams.values():
        for chunk in stream.reassembly:
            beyond_gap = uint32_gt(chunk.tsn, last)
            if beyond_gap and (highest is None or uint32_gt(chunk.tsn, highest[0].tsn)):
                highest = (chunk, stream.reassembly)
    if highest is None or not uint32_gt(highest[0].tsn, below):
        return False
    chunk, reassembly = highest
    reassembly.remove(chunk)
    transport._sack_misordered.discard(chunk.tsn)
    transport._advertised_rwnd += len(chunk.user_data)
    return True


def refusal(transport: RTCSctpTransport, chunk: DataChunk) -> str | None:
    """Why `chunk` must not be held by `transport` (a `dropped` key), or None to accept it.

    May give up out-of-order chunks to make room for it (see the module's docstring)."""
    last = transport._last_received_tsn
    if last is None or not uint32_gt(chunk.tsn, last) or chunk.tsn in transport._sack_misordered:
        return None  # no association yet, or a duplicate that aiortc only acknowledges again
    if not chunk.user_data:
        return "sctp_empty_data"
    streams = transport._inbound_streams
    if chunk.stream_id not in streams and len(streams) >= MAX_STREAMS:
        return "sctp_too_many_streams"
    while True:
        held_bytes, held_chunks = _held(transport)
        fits = held_bytes + len(chunk.user_data) <= MAX_HELD_BYTES
        if fits and held_chunks < MAX_HELD_CHUNKS:
            return None
        if not _give_up_highest_out_of_order(transport, below=chunk.tsn):
            return "sctp_over_window"


async def _guarded_receive_data_chunk(self: RTCSctpTransport, chunk: DataChunk) -> None:
    why = refusal(self, chunk)
    if why is None:
        await _original_receive_data_chunk(self, chunk)
        return
    self._sack_needed = True  # the sender learns our (full) window
    dropped[why] += 1


def _capabilities(cls: Any) -> RTCSctpCapabilities:
    return RTCSctpCapabilities(maxMessageSize=MAX_MESSAGE_BYTES)


def install() -> None:
    """Guard every RTCSctpTransport of this process (idempotent)."""
    RTCSctpTransport._data_channel_receive = _guarded_receive  # type: ignore[method-assign]
    RTCSctpTransport._receive_chunk = _guarded_receive_chunk  # type: ignore[method-assign]
    RTCSctpTransport._receive_data_chunk = _guarded_receive_data_chunk  # type: ignore[method-assign]
    RTCSctpTransport.getCapabilities = classmethod(_capabilities)  # type: ignore[method-assign,assignment]


def installed() -> bool:
    """True once `install()` has run in this process."""
    return RTCSctpTransport._data_channel_receive is _guarded_receive
