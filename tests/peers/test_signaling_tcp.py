"""TCP signaling: both start orders, and bad or silent connections refused without a traceback."""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Awaitable, Callable

import pytest
from aiortc import RTCSessionDescription

from peers.signaling import tcp
from peers.signaling.base import SignalingError
from peers.signaling.tcp import TcpSignaling

SDP = "v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n"
OFFER = RTCSessionDescription(sdp=SDP + "a=offer\r\n", type="offer")
ANSWER = RTCSessionDescription(sdp=SDP + "a=answer\r\n", type="answer")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_offer_and_answer_cross_in_either_start_order() -> None:
    port = free_port()
    server, client = (
        TcpSignaling("offer", "127.0.0.1", port),
        TcpSignaling("answer", "127.0.0.1", port),
    )
    try:
        await client.connect()
        client_received = asyncio.ensure_future(client.receive())  # client first: it retries
        await asyncio.sleep(0.5)
        await server.connect()
        await asyncio.wait_for(server.send(OFFER), 10)
        got_offer = await asyncio.wait_for(client_received, 10)
        assert isinstance(got_offer, RTCSessionDescription) and got_offer.sdp == OFFER.sdp
        await client.send(ANSWER)
        got_answer = await asyncio.wait_for(server.receive(), 10)
        assert isinstance(got_answer, RTCSessionDescription)
        assert (got_answer.type, got_answer.sdp) == ("answer", ANSWER.sdp)
    finally:
        await client.close()
        await server.close()


async def test_server_first_then_client() -> None:
    port = free_port()
    server, client = (
        TcpSignaling("offer", "127.0.0.1", port),
        TcpSignaling("answer", "127.0.0.1", port),
    )
    try:
        await server.connect()
        await server.send(OFFER)
        got_offer = await asyncio.wait_for(client.receive(), 10)
        assert isinstance(got_offer, RTCSessionDescription)
        await client.send(ANSWER)
        assert await asyncio.wait_for(server.receive(), 10) == ANSWER
    finally:
        await client.close()
        await server.close()


async def send_lines(port: int, *lines: bytes, then_read: bool = False) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    for line in lines:
        writer.write(line)
        await writer.drain()
    if then_read:
        await reader.readline()  # the offer
    await asyncio.sleep(0.05)
    writer.close()


HELLO = tcp.encode({"type": "hello", "protocol": tcp.PROTOCOL})

HOSTILE: dict[str, bytes] = {
    "{}": b"{}\n",
    "[1]": b"[1]\n",
    "unknown type": b'{"type":"foo"}\n',
    "hello with an extra key": b'{"type":"hello","protocol":"rebound/1","x":1}\n',
    "old aiortc candidate": b'{"type":"candidate","candidate":"garbage","id":"0","label":0}\n',
    "not utf-8": b"\xff\xfe\n",
    "not json": b"GET / HTTP/1.1\r\n",
    "100 kB without a newline": b"x" * 100_000,
}


async def test_bad_and_silent_clients_are_refused_and_the_real_one_wins(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(tcp, "HELLO_TIMEOUT_S", 1.0)
    port = free_port()
    server, client = (
        TcpSignaling("offer", "127.0.0.1", port),
        TcpSignaling("answer", "127.0.0.1", port),
    )
    caplog.set_level(logging.WARNING, logger="rebound.signaling")
    try:
        await server.connect()
        await server.send(OFFER)
        idle_reader, idle_writer = await asyncio.open_connection("127.0.0.1", port)  # silent
        probe = socket.create_connection(("127.0.0.1", port))  # a port probe
        probe.close()
        for line in HOSTILE.values():
            await send_lines(port, line)
        bad_answers: list[bytes] = [
            b'{"type":"answer","sdp":"hello"}\n',
            b'{"type":"answer","sdp":"v=0\\r\\nm=audio x\\r\\n"}\n',
            b'{"type":"answer","sdp":"' + SDP.replace("\r\n", "\\r\\n").encode() + b'","x":1}\n',
            b'{"type":"offer","sdp":"v=0"}\n',
        ]
        for line in bad_answers:
            await send_lines(port, HELLO, line, then_read=True)
        expected = 1 + 1 + len(HOSTILE) + len(bad_answers)  # idle + probe + the rest
        async with asyncio.timeout(10):
            while server.refused < expected:
                await asyncio.sleep(0.05)
        # still connected, and still silent, when the real client wins
        _, waiting_writer = await asyncio.open_connection("127.0.0.1", port)
        got_offer = await asyncio.wait_for(client.receive(), 10)  # the real client
        assert got_offer == OFFER
        await client.send(ANSWER)
        assert await asyncio.wait_for(server.receive(), 10) == ANSWER
        await asyncio.sleep(0.2)
        idle_writer.close()
        waiting_writer.close()
        del idle_reader
    finally:
        await client.close()
        await server.close()
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    refusals = [r.getMessage() for r in caplog.records if "refused" in r.getMessage()]
    assert len(refusals) == expected
    assert all("\n" not in line and "Traceback" not in line for line in refusals)
    assert any("silent" in line for line in refusals)
    assert any("longer than" in line for line in refusals)


async def test_the_listener_closes_after_the_answer() -> None:
    port = free_port()
    server, client = (
        TcpSignaling("offer", "127.0.0.1", port),
        TcpSignaling("answer", "127.0.0.1", port),
    )
    try:
        await server.connect()
        await server.send(OFFER)
        await asyncio.wait_for(client.receive(), 10)
        await client.send(ANSWER)
        await asyncio.wait_for(server.receive(), 10)
        with pytest.raises(OSError):
            for _ in range(50):  # the close is asynchronous
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                await asyncio.sleep(0.05)
    finally:
        await client.close()
        await server.close()


async def fake_server(port: int, handle: Callable[..., Awaitable[None]]) -> asyncio.Server:
    return await asyncio.start_server(handle, "127.0.0.1", port)


async def test_the_client_hangs_up_on_a_server_that_is_not_ours_and_dials_again(
    caplog: pytest.LogCaptureFixture,
) -> None:
    port = free_port()
    hellos: list[bytes] = []

    async def impostor(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        hellos.append(await reader.readline())
        writer.write(b'{"type":"offer","sdp":"not sdp"}\n' if len(hellos) == 1 else b"[1]\n")
        await writer.drain()
        writer.close()

    caplog.set_level(logging.WARNING, logger="rebound.signaling")
    client = TcpSignaling("answer", "127.0.0.1", port)
    impostor_server = await fake_server(port, impostor)
    waiting = asyncio.ensure_future(client.receive())
    try:
        async with asyncio.timeout(10):
            while len(hellos) < 2:
                await asyncio.sleep(0.05)
        impostor_server.close()
        await impostor_server.wait_closed()
        server = TcpSignaling("offer", "127.0.0.1", port)
        await server.connect()
        await server.send(OFFER)
        assert await asyncio.wait_for(waiting, 10) == OFFER
        await server.close()
    finally:
        waiting.cancel()
        await client.close()
    assert hellos[0] == HELLO
    lines = [r.getMessage() for r in caplog.records]
    assert any("is not a Rebound server" in line for line in lines)


async def test_a_port_in_use_is_a_signaling_error() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        server = TcpSignaling("offer", "127.0.0.1", port)
        with pytest.raises(SignalingError, match="cannot listen for signaling"):
            await server.connect()
        await server.close()


async def test_publish_metrics_is_a_no_op_and_close_is_idempotent() -> None:
    signaling = TcpSignaling("offer", "127.0.0.1", free_port())
    await signaling.connect()
    await signaling.publish_metrics({"frames_sent": 1}, final=True)
    await signaling.publish_series("{}\n")
    await signaling.close()
    await signaling.close()
