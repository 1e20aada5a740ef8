"""Keep a hostile data-channel peer from killing aiortc's transport; advertise our size limit.

Where aiortc breaks (1.16, `aiortc/rtcsctptransport.py`): `RTCSctpTransport._data_channel_receive`
turns a string message (PPID 51, WEBRTC_STRING) into text with `data.decode("utf8")`, asserts
on DCEP open/ack messages (`assert stream_id not in self._data_channels`), and emits
"message" to our handler (pyee re-raises a handler's exception). Any exception there goes up
through the SCTP receive path into `RTCDtlsTransport.__run`, which logs it and closes the DTLS
transport: media and data channel die together, and one message has ended the session.

Why a patch and not a subclass: `RTCPeerConnection` builds its `RTCSctpTransport` itself, with
no hook to substitute a class, so a subclass would need a patch of the connection anyway.
`install()` therefore wraps exactly three members of the class, once per process, and leaves
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
"""

from __future__ import annotations

import logging
from collections import Counter
from typing import Any

from aiortc.rtcsctptransport import (
    WEBRTC_BINARY,
    WEBRTC_STRING,
    Chunk,
    InitChunk,
    RTCSctpCapabilities,
    RTCSctpTransport,
)

from peers.protocol import MAX_MESSAGE_BYTES

log = logging.getLogger("rebound.sctp")

dropped: Counter[str] = Counter()
"""Messages dropped because aiortc (or a handler) raised on them, by exception name."""

_original_receive = RTCSctpTransport._data_channel_receive
_original_receive_chunk = RTCSctpTransport._receive_chunk


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


def _capabilities(cls: Any) -> RTCSctpCapabilities:
    return RTCSctpCapabilities(maxMessageSize=MAX_MESSAGE_BYTES)


def install() -> None:
    """Guard every RTCSctpTransport of this process (idempotent)."""
    RTCSctpTransport._data_channel_receive = _guarded_receive  # type: ignore[method-assign]
    RTCSctpTransport._receive_chunk = _guarded_receive_chunk  # type: ignore[method-assign]
    RTCSctpTransport.getCapabilities = classmethod(_capabilities)  # type: ignore[method-assign,assignment]


def installed() -> bool:
    """True once `install()` has run in this process."""
    return RTCSctpTransport._data_channel_receive is _guarded_receive
