import asyncio
import socket

from aiortc import RTCSessionDescription

from peers.signaling.tcp import TcpSignaling


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
    offer = RTCSessionDescription(sdp="v=0 offer", type="offer")
    answer = RTCSessionDescription(sdp="v=0 answer", type="answer")
    try:
        client_received = asyncio.ensure_future(client.receive())  # client first: it retries
        await asyncio.sleep(0.5)
        await asyncio.wait_for(server.send(offer), 10)
        got_offer = await asyncio.wait_for(client_received, 10)
        assert isinstance(got_offer, RTCSessionDescription) and got_offer.sdp == "v=0 offer"
        await client.send(answer)
        got_answer = await asyncio.wait_for(server.receive(), 10)
        assert isinstance(got_answer, RTCSessionDescription) and got_answer.type == "answer"
    finally:
        await client.close()
        await server.close()


async def test_publish_metrics_is_a_no_op_and_close_is_idempotent() -> None:
    signaling = TcpSignaling("offer", "127.0.0.1", free_port())
    await signaling.publish_metrics({"frames_sent": 1}, final=True)
    await signaling.close()
    await signaling.close()
