"""PeerChannel with a stand-in for aiortc's RTCDataChannel: guarded, bounded, heartbeating."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable

import pytest

from peers import protocol
from peers.channel import PENDING_LIMIT, PeerChannel
from peers.session import exception_proof


class FakeChannel:
    """Just what PeerChannel uses of RTCDataChannel."""

    label = "coordinates"

    def __init__(self, state: str = "connecting") -> None:
        self.readyState = state
        self.bufferedAmount = 0
        self.sent: list[str] = []
        self.handlers: dict[str, Callable[..., None]] = {}
        self.refuse = False

    def on(self, event: str, handler: Callable[..., None]) -> None:
        self.handlers[event] = handler

    def send(self, text: str) -> None:
        if self.refuse:
            raise ValueError("the remote party only supports messages up to 1 bytes")
        self.sent.append(text)

    def open(self) -> None:
        self.readyState = "open"
        self.handlers["open"]()


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


async def test_messages_wait_for_the_channel_to_open_then_heartbeats_start() -> None:
    errors: Counter[str] = Counter()
    channel = PeerChannel(lambda message: None, errors)
    fake = FakeChannel()
    assert channel.attach(fake)  # type: ignore[arg-type]
    channel.send("first")
    channel.send("second")
    assert fake.sent == []
    fake.open()
    assert fake.sent[:2] == ["first", "second"]
    await asyncio.sleep(protocol.HEARTBEAT_INTERVAL_S * 2.5)
    assert fake.sent.count(protocol.HEARTBEAT) >= 2
    await channel.stop()


async def test_the_queue_before_open_is_bounded_and_keeps_the_newest() -> None:
    channel = PeerChannel(lambda message: None, Counter())
    fake = FakeChannel()
    channel.attach(fake)  # type: ignore[arg-type]
    for i in range(PENDING_LIMIT + 10):
        channel.send(str(i))
    fake.open()
    assert fake.sent[0] == "10"
    assert fake.sent[PENDING_LIMIT - 1] == str(PENDING_LIMIT + 9)
    await channel.stop()


async def test_a_failing_handler_or_send_is_counted_never_raised() -> None:
    errors: Counter[str] = Counter()

    def handler(message: object) -> None:
        raise OverflowError("a bug of ours")

    channel = PeerChannel(handler, errors)
    fake = FakeChannel("open")  # the answerer's channel arrives open
    channel.attach(fake)  # type: ignore[arg-type]
    fake.handlers["message"]("anything")
    assert errors["message"] == 1
    fake.refuse = True
    channel.send("x")
    assert channel.send_failures >= 1
    await channel.stop()


async def test_silence_is_measured_from_the_last_message_once_open() -> None:
    clock = Clock()
    channel = PeerChannel(lambda message: None, Counter(), clock=clock)
    fake = FakeChannel()
    channel.attach(fake)  # type: ignore[arg-type]
    clock.now += 100
    assert not channel.silent()  # not open yet: nothing is expected
    fake.open()
    clock.now += 3
    fake.handlers["message"](protocol.HEARTBEAT)
    clock.now += 4
    assert not channel.silent()
    clock.now += 0.1
    assert channel.silent()
    await channel.stop()


def test_only_the_first_channel_is_used() -> None:
    channel = PeerChannel(lambda message: None, Counter())
    assert channel.attach(FakeChannel())  # type: ignore[arg-type]
    assert not channel.attach(FakeChannel())  # type: ignore[arg-type]


def test_exception_proof_counts_by_name() -> None:
    errors: Counter[str] = Counter()
    calls: list[int] = []

    def handler(value: int) -> None:
        calls.append(value)
        if value < 0:
            raise ValueError("negative")

    guarded = exception_proof(handler, errors, "track")
    guarded(1)
    guarded(-1)
    assert calls == [1, -1]
    assert errors == Counter({"track": 1})
    with pytest.raises(ValueError):
        handler(-2)
