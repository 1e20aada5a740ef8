"""ConfigMap signaling against the emulated API server (real kubernetes client, real watch)."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator

import pytest
from aiortc import RTCSessionDescription
from kube_harness import Emulator
from kubernetes import client

from peers.signaling.base import SignalingError
from peers.signaling.configmap import ConfigMapSignaling

NS = "signaling-test"


@pytest.fixture(scope="module")
def emulator() -> Iterator[Emulator]:
    emu = Emulator(NS)
    yield emu
    emu.close()


def make_configmap(emulator: Emulator, name: str, data: dict[str, str] | None = None) -> None:
    client.CoreV1Api(emulator.api).create_namespaced_config_map(
        NS, {"metadata": {"name": name, "namespace": NS}, "data": data or {}}
    )


def data_of(emulator: Emulator, name: str) -> dict[str, str]:
    cm = client.CoreV1Api(emulator.api).read_namespaced_config_map(name, NS)
    return dict(cm.data or {})


def pair(emulator: Emulator, name: str) -> tuple[ConfigMapSignaling, ConfigMapSignaling]:
    return (
        ConfigMapSignaling("offer", name, NS, emulator.api_client()),
        ConfigMapSignaling("answer", name, NS, emulator.api_client()),
    )


async def test_offer_and_answer_cross_through_the_configmap(emulator: Emulator) -> None:
    make_configmap(emulator, "s1-signaling", {"unrelated": "kept"})
    server, peer = pair(emulator, "s1-signaling")
    await server.connect()
    await peer.connect()
    offer = RTCSessionDescription(sdp="v=0\r\nserver\r\n", type="offer")
    answer = RTCSessionDescription(sdp="v=0\r\nclient\r\n", type="answer")
    try:
        waiting_for_offer = asyncio.ensure_future(peer.receive())  # watches before the offer
        await asyncio.sleep(0.3)
        await server.send(offer)
        got = await asyncio.wait_for(waiting_for_offer, 15)
        assert isinstance(got, RTCSessionDescription) and got.sdp == offer.sdp
        await peer.send(answer)
        got = await asyncio.wait_for(server.receive(), 15)
        assert isinstance(got, RTCSessionDescription) and got.type == "answer"
        data = data_of(emulator, "s1-signaling")
        assert {"offer", "answer", "unrelated"} <= set(data)
    finally:
        await server.close()
        await peer.close()


async def test_metrics_and_errors_merge_without_clobbering(emulator: Emulator) -> None:
    make_configmap(emulator, "s2-signaling", {"offer": "x", "answer": "y"})
    server, peer = pair(emulator, "s2-signaling")
    await server.publish_metrics({"frames_sent": 10}, final=False)
    assert json.loads(data_of(emulator, "s2-signaling")["metrics"]) == {"frames_sent": 10}
    assert "summary" not in data_of(emulator, "s2-signaling")
    await server.publish_metrics({"frames_sent": 20}, final=True)
    await peer.publish_error("it broke")
    data = data_of(emulator, "s2-signaling")
    assert json.loads(data["summary"]) == {"frames_sent": 20}
    assert data["error"] == "client: it broke"
    assert (data["offer"], data["answer"]) == ("x", "y")


async def test_a_missing_configmap_is_a_clear_error(emulator: Emulator) -> None:
    server, _ = pair(emulator, "nope-signaling")
    with pytest.raises(SignalingError, match=f"{NS}/nope-signaling does not exist"):
        await server.connect()
    with pytest.raises(SignalingError, match="cannot write"):
        await server.send(RTCSessionDescription(sdp="v=0", type="offer"))


async def test_a_malformed_description_is_a_clear_error(emulator: Emulator) -> None:
    make_configmap(emulator, "s3-signaling", {"offer": "{not json"})
    _, peer = pair(emulator, "s3-signaling")
    with pytest.raises(SignalingError, match="malformed offer"):
        await asyncio.wait_for(peer.receive(), 15)
    await peer.close()


async def test_close_stops_the_watch_thread(emulator: Emulator) -> None:
    make_configmap(emulator, "s4-signaling")
    server, _ = pair(emulator, "s4-signaling")
    before = {t.name for t in threading.enumerate()}
    waiting = asyncio.ensure_future(server.receive())
    await asyncio.sleep(0.5)
    assert "watch-answer" in {t.name for t in threading.enumerate()} - before
    await server.close()
    waiting.cancel()
    for _ in range(100):  # the thread ends at its next read timeout at the latest
        if "watch-answer" not in {t.name for t in threading.enumerate()}:
            break
        await asyncio.sleep(0.1)
    assert "watch-answer" not in {t.name for t in threading.enumerate()}
