"""ConfigMap signaling against the emulated API server (real kubernetes client, real watch).

Each peer writes only its own ConfigMap and reads the other's (docs/CONTRACTS.md)."""

from __future__ import annotations

import argparse
import asyncio
import json
import threading
from collections.abc import Iterator

import pytest
from aiortc import RTCSessionDescription
from kube_harness import Emulator
from kubernetes import client

from peers import signaling
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


def pair(emulator: Emulator, session: str) -> tuple[ConfigMapSignaling, ConfigMapSignaling]:
    """The server's and the client's end for session `session`."""
    mine, theirs = f"{session}-server-signaling", f"{session}-client-signaling"
    return (
        ConfigMapSignaling("offer", mine, theirs, NS, emulator.api_client()),
        ConfigMapSignaling("answer", theirs, mine, NS, emulator.api_client()),
    )


def make_pair(emulator: Emulator, session: str, **data: dict[str, str]) -> None:
    """Both ConfigMaps of a session, as the operator creates them."""
    for role in ("server", "client"):
        make_configmap(emulator, f"{session}-{role}-signaling", data.get(role))


async def test_offer_and_answer_cross_through_the_configmaps(emulator: Emulator) -> None:
    make_pair(emulator, "s1", server={"unrelated": "kept"})
    server, peer = pair(emulator, "s1")
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
        # each description went into its writer's own ConfigMap only
        assert set(data_of(emulator, "s1-server-signaling")) == {"offer", "unrelated"}
        assert set(data_of(emulator, "s1-client-signaling")) == {"answer"}
    finally:
        await server.close()
        await peer.close()


async def test_metrics_and_errors_go_to_the_writers_own_configmap(emulator: Emulator) -> None:
    make_pair(emulator, "s2", server={"offer": "x"}, client={"answer": "y"})
    server, peer = pair(emulator, "s2")
    await server.publish_metrics({"frames_sent": 10}, final=False)
    assert json.loads(data_of(emulator, "s2-server-signaling")["metrics"]) == {"frames_sent": 10}
    assert "summary" not in data_of(emulator, "s2-server-signaling")
    await server.publish_metrics({"frames_sent": 20}, final=True)
    await server.publish_series('{"type":"session"}\n')
    await peer.publish_error("it broke")
    await server.publish_error("so did I")
    data = data_of(emulator, "s2-server-signaling")
    assert json.loads(data["summary"]) == {"frames_sent": 20}
    assert (data["offer"], data["error"]) == ("x", "server: so did I")
    assert data["series"] == '{"type":"session"}\n'
    assert data_of(emulator, "s2-client-signaling") == {"answer": "y", "error": "client: it broke"}


async def test_a_missing_configmap_is_a_clear_error(emulator: Emulator) -> None:
    server, _ = pair(emulator, "nope")
    with pytest.raises(SignalingError, match=f"{NS}/nope-server-signaling does not exist"):
        await server.connect()
    with pytest.raises(SignalingError, match="cannot write"):
        await server.send(RTCSessionDescription(sdp="v=0", type="offer"))
    make_configmap(emulator, "half-server-signaling")
    server, _ = pair(emulator, "half")
    with pytest.raises(SignalingError, match=f"{NS}/half-client-signaling does not exist"):
        await server.connect()  # both must exist


async def test_a_peer_never_takes_its_own_key_for_the_other_peers(emulator: Emulator) -> None:
    # An offer in the client's own ConfigMap (say, forged) is not the server's offer.
    make_pair(emulator, "s5", client={"offer": '{"type": "offer", "sdp": "forged"}'})
    _, peer = pair(emulator, "s5")
    waiting = asyncio.ensure_future(peer.receive())
    await asyncio.sleep(0.5)
    assert not waiting.done()
    real = RTCSessionDescription(sdp="v=0\r\nreal\r\n", type="offer")
    server, _ = pair(emulator, "s5")
    await server.send(real)
    got = await asyncio.wait_for(waiting, 15)
    assert isinstance(got, RTCSessionDescription) and got.sdp == real.sdp
    await peer.close()


async def test_a_malformed_description_is_a_clear_error(emulator: Emulator) -> None:
    make_pair(emulator, "s3", server={"offer": "{not json"})
    _, peer = pair(emulator, "s3")
    with pytest.raises(SignalingError, match="malformed offer in signaling-test/s3-server"):
        await asyncio.wait_for(peer.receive(), 15)
    await peer.close()


async def test_close_stops_the_watch_thread(emulator: Emulator) -> None:
    make_pair(emulator, "s4")
    server, _ = pair(emulator, "s4")
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


@pytest.mark.parametrize(
    ("flags", "problem"),
    [
        (["--configmap", "a"], "needs --configmap NAME (this peer's), --peer-configmap NAME"),
        (["--configmap", "a", "--peer-configmap", "b"], "and --namespace NS"),
        (["--configmap", "a", "--peer-configmap", "a", "--namespace", "n"], "different"),
        (["--configmap", "a", "--peer-configmap", "b", "--namespace", "n"], None),
    ],
)
def test_configmap_signaling_needs_both_configmaps(flags: list[str], problem: str | None) -> None:
    parser = argparse.ArgumentParser()
    signaling.add_arguments(parser)
    args = parser.parse_args(["--signaling", "configmap", *flags])
    found = signaling.validate_arguments(args)
    assert found == problem if problem is None else (found is not None and problem in found)


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("[" * 300_000, r"characters \(at most"),
        ("[" * 100_000, "malformed offer"),
        ("[" * 5000, "malformed offer"),
        ('{"type": "answer", "sdp": "v=0"}', "not an SDP offer"),
        ('{"type": "candidate"}', "malformed offer"),
        ("[]", "malformed offer"),
    ],
)
async def test_a_hostile_description_is_a_clear_error(
    emulator: Emulator, value: str, problem: str
) -> None:
    session = f"h{abs(hash(value)) % 10**8}"
    make_pair(emulator, session, server={"offer": value})
    _, peer = pair(emulator, session)
    with pytest.raises(SignalingError, match=problem):
        await asyncio.wait_for(peer.receive(), 15)
    await peer.close()
