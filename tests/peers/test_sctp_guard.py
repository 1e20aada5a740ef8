"""Hostile SCTP user messages against two real aiortc peer connections in this process."""

from __future__ import annotations

import asyncio
import struct
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
from aiortc import RTCConfiguration, RTCDataChannel, RTCPeerConnection
from aiortc.rtcsctptransport import (
    SCTP_DATA_FIRST_FRAG,
    SCTP_DATA_LAST_FRAG,
    WEBRTC_BINARY,
    WEBRTC_DCEP,
    WEBRTC_STRING,
    DataChunk,
    InitChunk,
    RTCSctpTransport,
)

from peers import protocol, sctp_guard

DATA_CHANNEL_OPEN = 0x03


@dataclass
class Pair:
    """Two connected peer connections and both ends of one data channel."""

    offerer: RTCPeerConnection
    answerer: RTCPeerConnection
    local: RTCDataChannel  # the offerer's end: receives what we inject
    remote: RTCDataChannel  # the answerer's end: we inject through its SCTP transport
    offer_sdp: str


@pytest.fixture
async def pair() -> AsyncIterator[Pair]:
    sctp_guard.install()
    offerer = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    answerer = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    local = offerer.createDataChannel("coordinates")
    arrived: asyncio.Future[RTCDataChannel] = asyncio.get_running_loop().create_future()
    answerer.on("datachannel", arrived.set_result)
    opened = asyncio.Event()
    local.on("open", opened.set)
    await offerer.setLocalDescription(await offerer.createOffer())
    await answerer.setRemoteDescription(offerer.localDescription)
    await answerer.setLocalDescription(await answerer.createAnswer())
    await offerer.setRemoteDescription(answerer.localDescription)
    remote = await asyncio.wait_for(arrived, 30)
    await asyncio.wait_for(opened.wait(), 30)
    try:
        yield Pair(offerer, answerer, local, remote, offerer.localDescription.sdp)
    finally:
        await answerer.close()
        await offerer.close()


async def inject(channel: RTCDataChannel, pp_id: int, data: bytes) -> None:
    """Send raw SCTP user data, bypassing aiortc's sender-side checks (as a hostile peer can)."""
    sctp = channel.transport
    sctp._data_channel_queue.append((channel, pp_id, data))
    await sctp._data_channel_flush()


async def until(condition: object, timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():  # type: ignore[operator]
            await asyncio.sleep(0.02)


def reason(message: object) -> str:
    try:
        protocol.decode(message)
    except protocol.ProtocolError as exc:
        return exc.reason
    return "accepted"


async def test_we_advertise_our_message_size_limit(pair: Pair) -> None:
    assert f"a=max-message-size:{protocol.MAX_MESSAGE_BYTES}" in pair.offer_sdp
    # and a conforming aiortc peer refuses to send us more
    with pytest.raises(ValueError, match="only supports messages up to 512 bytes"):
        pair.remote.send("x" * (protocol.MAX_MESSAGE_BYTES + 1))


async def test_hostile_messages_are_refused_and_the_transport_survives(pair: Pair) -> None:
    received: list[object] = []

    def handler(message: object) -> None:
        received.append(message)
        if message == "raise":
            raise RuntimeError("a handler bug")

    pair.local.on("message", handler)
    before = sum(sctp_guard.dropped.values())
    await inject(pair.remote, WEBRTC_STRING, b'{"k":"hb"}\xff\xfe')  # invalid UTF-8
    await inject(pair.remote, WEBRTC_STRING, b"9" * 100_000)  # far over the limit
    await inject(pair.remote, WEBRTC_BINARY, b"\x00" * 5000)
    label = b"coordinates"
    dcep = struct.pack("!BBHLHH", DATA_CHANNEL_OPEN, 0, 0, 0, len(label), 0) + label
    await inject(pair.remote, WEBRTC_DCEP, dcep)  # re-opens an existing stream: aiortc asserts
    pair.remote.send("raise")
    pair.remote.send(protocol.HEARTBEAT)
    await until(lambda: protocol.HEARTBEAT in received)

    assert [reason(m) for m in received] == [
        "not_utf8",
        "too_large",
        "too_large",
        "not_json",
        "accepted",
    ]
    assert all(len(m) <= protocol.MAX_MESSAGE_BYTES + 1 for m in received)
    assert sum(sctp_guard.dropped.values()) - before == 2  # the DCEP assert, the handler bug
    assert pair.offerer.connectionState == "connected"
    assert pair.answerer.connectionState == "connected"
    assert pair.local.readyState == "open"
    # and the channel still works the other way
    back: list[object] = []
    pair.remote.on("message", back.append)
    pair.local.send(protocol.BYE)
    await until(lambda: back == [protocol.BYE])


async def test_a_late_init_does_not_wedge_an_established_association(pair: Pair) -> None:
    """aiortc resets its receive TSN on any INIT; once established, that stalls the channel."""
    received: list[object] = []
    pair.local.on("message", received.append)
    for i in range(8):
        pair.remote.send(f"early {i}")
    await until(lambda: len(received) == 8)
    sender, receiver = pair.remote.transport, pair.local.transport
    late = InitChunk()  # the sender's INIT again, as a delayed duplicate would arrive
    late.initiate_tag = sender._local_verification_tag
    late.advertised_rwnd = 1024 * 1024
    late.outbound_streams = late.inbound_streams = 65535
    late.initial_tsn = (sender._local_tsn - 9) % 2**32  # before the 8 messages and the DCEP ack
    before = sctp_guard.dropped["late_init"]
    await receiver._receive_chunk(late)
    for i in range(300):  # several congestion windows' worth
        pair.remote.send(f"{i:04d}" + "x" * 45)
        await asyncio.sleep(0.002)
    await until(lambda: len(received) == 308, timeout=20)
    await until(lambda: sender._flight_size == 0)
    assert sctp_guard.dropped["late_init"] == before + 1


def data_chunk(tsn: int, stream_id: int, seq: int, data: bytes, flags: int) -> DataChunk:
    """A DATA chunk as a hostile peer can put on the wire."""
    chunk = DataChunk(flags=flags)
    chunk.tsn, chunk.stream_id, chunk.stream_seq = tsn % 2**32, stream_id, seq % 2**16
    chunk.protocol, chunk.user_data = WEBRTC_STRING, data
    return chunk


def held(transport: RTCSctpTransport) -> tuple[int, int]:
    """(bytes, chunks) the transport holds for reassembly."""
    chunks = [c for s in transport._inbound_streams.values() for c in s.reassembly]
    return sum(len(c.user_data) for c in chunks), len(chunks)


async def test_a_message_that_never_ends_cannot_grow_the_receive_buffer(pair: Pair) -> None:
    receiver = pair.local.transport
    base = receiver._last_received_tsn
    before = sctp_guard.dropped["sctp_over_window"]
    for i in range(3000):  # 3 MB of fragments of one message whose last fragment never comes
        flags = SCTP_DATA_FIRST_FRAG if i == 0 else 0
        await receiver._receive_chunk(data_chunk(base + 1 + i, 9, 0, b"x" * 1000, flags))
    held_bytes, _ = held(receiver)
    assert held_bytes <= sctp_guard.MAX_HELD_BYTES
    assert sctp_guard.dropped["sctp_over_window"] - before == 3000 - held_bytes // 1000
    assert pair.offerer.connectionState == "connected"


async def test_chunks_beyond_a_gap_are_bounded_and_the_gap_is_still_filled(pair: Pair) -> None:
    receiver = pair.local.transport
    received: list[object] = []
    pair.local.on("message", received.append)
    sid = pair.local.id
    assert sid is not None
    first_seq = receiver._get_inbound_stream(sid).sequence_number
    base = receiver._last_received_tsn
    before = sctp_guard.dropped["sctp_over_window"]
    whole = SCTP_DATA_FIRST_FRAG | SCTP_DATA_LAST_FRAG
    for i in range(3000):  # TSN base+1 is missing: every message waits for it
        chunk = data_chunk(base + 2 + i, sid, first_seq + 1 + i, f'"m{i}"'.encode(), whole)
        await receiver._receive_chunk(chunk)
    assert held(receiver)[1] == sctp_guard.MAX_HELD_CHUNKS
    assert sctp_guard.dropped["sctp_over_window"] - before == 3000 - sctp_guard.MAX_HELD_CHUNKS
    assert received == []
    # The missing chunk arrives: the highest one held is given up to make room for it.
    await receiver._receive_chunk(data_chunk(base + 1, sid, first_seq, b'"gap"', whole))
    await until(lambda: len(received) == sctp_guard.MAX_HELD_CHUNKS)
    assert received[:3] == ['"gap"', '"m0"', '"m1"']
    assert received[-1] == f'"m{sctp_guard.MAX_HELD_CHUNKS - 2}"'
    assert held(receiver) == (0, 0)


async def test_empty_chunks_and_a_flood_of_streams_are_dropped(pair: Pair) -> None:
    receiver = pair.local.transport
    base = receiver._last_received_tsn
    before = dict(sctp_guard.dropped)
    streams_before = len(receiver._inbound_streams)
    whole = SCTP_DATA_FIRST_FRAG | SCTP_DATA_LAST_FRAG
    await receiver._receive_chunk(data_chunk(base + 1, 9, 0, b"", whole))
    assert sctp_guard.dropped["sctp_empty_data"] == before.get("sctp_empty_data", 0) + 1
    for i in range(40):
        await receiver._receive_chunk(data_chunk(base + 2 + i, 100 + i, 0, b'"x"', whole))
    assert len(receiver._inbound_streams) == sctp_guard.MAX_STREAMS
    refused = sctp_guard.dropped["sctp_too_many_streams"] - before.get("sctp_too_many_streams", 0)
    assert refused == 40 - (sctp_guard.MAX_STREAMS - streams_before)
