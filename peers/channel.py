"""One peer's end of the coordinates data channel, as both peers use it.

- Receiving never raises into aiortc: every handler runs guarded; an exception is counted in
  `errors` and the message dropped (see also `peers.sctp_guard`).
- Sending never raises into the caller: before the channel opens, messages wait in a bounded
  queue (the oldest go first); a send aiortc refuses is counted in `send_failures`.
- From the moment the channel opens, a heartbeat goes out every HEARTBEAT_INTERVAL_S, and
  every message received is a sign of life (`silence`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter, deque
from collections.abc import Callable

from aiortc import RTCDataChannel

from peers import protocol
from peers.liveness import Silence
from peers.session import exception_proof

log = logging.getLogger("rebound.channel")

LABEL = "coordinates"
PENDING_LIMIT = 1024
"""Messages kept while the channel is not open yet."""
FLUSH_POLL_S = 0.02
TRANSPORT_SETTLE_S = 0.1
"""After the send buffer empties: time for SCTP to hand the last chunk to the network."""


class PeerChannel:
    """The coordinates channel of one peer: guarded receive, safe send, heartbeats."""

    def __init__(
        self,
        on_message: Callable[[object], None],
        errors: Counter[str],
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._on_message = exception_proof(on_message, errors, "message")
        self.errors = errors
        self._clock = clock
        self.channel: RTCDataChannel | None = None
        self.opened = asyncio.Event()
        self.closed = asyncio.Event()
        self.silence = Silence()
        self.send_failures = 0
        self._pending: deque[str] = deque(maxlen=PENDING_LIMIT)
        self._heartbeat: asyncio.Task[None] | None = None

    def attach(self, channel: RTCDataChannel) -> bool:
        """Use `channel` (the first one only; False for any later one)."""
        if self.channel is not None:
            return False
        self.channel = channel
        channel.on("message", self._receive)
        channel.on("open", exception_proof(self._opened, self.errors, "open"))
        channel.on("close", self.closed.set)
        if channel.readyState == "open":  # the answerer's channel arrives open
            self._opened()
        return True

    @property
    def is_open(self) -> bool:
        """True while messages can be sent."""
        return self.channel is not None and self.channel.readyState == "open"

    def _receive(self, message: object) -> None:
        self.silence.heard(self._clock())
        self._on_message(message)

    def _opened(self) -> None:
        if self.opened.is_set():
            return
        self.opened.set()
        self.silence.heard(self._clock())  # the silence clock starts at open
        while self._pending and self.is_open:
            self._send_now(self._pending.popleft())
        self._heartbeat = asyncio.ensure_future(self._beat())

    async def _beat(self) -> None:
        while self.is_open:
            self._send_now(protocol.HEARTBEAT)
            await asyncio.sleep(protocol.HEARTBEAT_INTERVAL_S)

    def _send_now(self, text: str) -> None:
        assert self.channel is not None
        try:
            self.channel.send(text)
        except Exception as exc:  # closed meanwhile, or the peer advertised a tiny size
            self.send_failures += 1
            log.debug("could not send on the data channel: %r", exc)

    def send(self, text: str) -> None:
        """Send now if open, else keep it (bounded) until the channel opens."""
        if self.is_open:
            self._send_now(text)
        elif self.channel is None or self.channel.readyState == "connecting":
            self._pending.append(text)
        else:
            self.send_failures += 1

    def silent(self) -> bool:
        """True once the open channel has carried nothing from the other peer for too long."""
        return self.opened.is_set() and self.silence.silent(self._clock())

    async def flushed(self, timeout: float) -> bool:
        """Wait until everything sent has left the send buffer (True), or `timeout`."""
        deadline = self._clock() + timeout
        while self.is_open and self.channel is not None and self.channel.bufferedAmount > 0:
            if self._clock() >= deadline:
                return False
            await asyncio.sleep(FLUSH_POLL_S)
        await asyncio.sleep(TRANSPORT_SETTLE_S)
        return True

    async def stop(self) -> None:
        """Stop the heartbeat (the peer connection closes the channel itself)."""
        if self._heartbeat is not None:
            self._heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._heartbeat
