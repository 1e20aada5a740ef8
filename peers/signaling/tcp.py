"""TCP signaling for local runs: a small, bounded, line-based exchange.

Wire format: newline-terminated JSON objects (UTF-8), each at most MAX_LINE_BYTES long:

    client -> server   {"type": "hello", "protocol": "rebound/1"}   within HELLO_TIMEOUT_S
    server -> client   {"type": "offer", "sdp": "<SDP>"}
    client -> server   {"type": "answer", "sdp": "<SDP>"}           within ANSWER_TIMEOUT_S

The server (offerer) listens from `connect()` on and serves every connection concurrently
(at most MAX_CONNECTIONS at once). A connection that says anything else, too much, or
nothing in time is refused with one log line and closed, and the server keeps waiting: a
port probe or an idle connection cannot take the session. The first valid answer wins;
then the listener closes. The client (answerer) dials until the server is up (either may
start first) and treats a server that is not a Rebound server the same way: one line,
hang up, dial again, until its caller's timeout.

This replaces aiortc's `TcpSocketSignaling`, whose first connection wins and whose reader
has no size limit and raises on anything it does not expect.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import Any

from aiortc import RTCSessionDescription
from aiortc.sdp import SessionDescription

from peers.signaling.base import Role, SignalingError, SignalingMessage

log = logging.getLogger("rebound.signaling")

PROTOCOL = "rebound/1"
MAX_LINE_BYTES = 64 * 1024
"""An SDP with a few dozen candidates is ~10 kB."""
HELLO_TIMEOUT_S = 5.0
OFFER_TIMEOUT_S = 10.0
ANSWER_TIMEOUT_S = 60.0
MAX_CONNECTIONS = 16
RETRY_INTERVAL_S = 0.2
_HELLO = {"type": "hello", "protocol": PROTOCOL}


class Refused(Exception):
    """The other end of a signaling connection said something we do not accept."""


def encode(message: dict[str, str]) -> bytes:
    """One wire line."""
    return json.dumps(message, separators=(",", ":")).encode("utf-8") + b"\n"


def parse(line: bytes, expected: str) -> dict[str, str]:
    """The message of `expected` type in `line`; Refused (with a short reason) otherwise."""
    try:
        message = json.loads(line.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise Refused("not a JSON line") from None
    if not isinstance(message, dict):
        raise Refused(f"not a JSON object ({type(message).__name__})")
    kind = message.get("type")
    if kind != expected:
        raise Refused(f"expected {expected!r}, got type {str(kind)[:40]!r}")
    keys = set(_HELLO) if expected == "hello" else {"type", "sdp"}
    if set(message) != keys:
        raise Refused(f"unexpected keys {sorted(str(k)[:20] for k in message)[:8]}")
    if expected == "hello":
        if message["protocol"] != PROTOCOL:
            raise Refused(f"protocol {str(message['protocol'])[:40]!r}, not {PROTOCOL!r}")
        return message
    sdp = message["sdp"]
    if not isinstance(sdp, str) or not sdp.startswith("v=0"):
        raise Refused("the sdp is not an SDP document")
    try:
        SessionDescription.parse(sdp)
    except Exception as exc:  # aiortc's parser raises whatever the text provokes
        raise Refused(f"unparsable SDP ({type(exc).__name__})") from None
    return message


async def read_message(reader: asyncio.StreamReader, expected: str) -> dict[str, str]:
    """Read one bounded line and parse it; Refused on overlong, truncated or bad lines."""
    try:
        line = await reader.readuntil(b"\n")
    except asyncio.LimitOverrunError:
        raise Refused(f"line longer than {MAX_LINE_BYTES} bytes") from None
    except asyncio.IncompleteReadError:
        raise Refused(f"hung up before sending its {expected}") from None
    return parse(line, expected)


def _address(writer: asyncio.StreamWriter) -> str:
    peer = writer.get_extra_info("peername")
    return f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else "a signaling client"


async def _hang_up(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(OSError, asyncio.CancelledError):
        await writer.wait_closed()


class TcpSignaling:
    """One end of TCP signaling; `role` picks listener (offer) or dialer (answer)."""

    def __init__(self, role: Role, host: str, port: int) -> None:
        self.role: Role = role
        self.host = host
        self.port = port
        self._listener: asyncio.Server | None = None
        self._offer: bytes | None = None
        self._offer_ready = asyncio.Event()
        self._answer: asyncio.Future[RTCSessionDescription] | None = None
        self._serving: set[asyncio.Task[Any]] = set()
        self._writer: asyncio.StreamWriter | None = None
        self._closed = False
        self.refused = 0

    @property
    def where(self) -> str:
        """host:port, for messages."""
        return f"{self.host}:{self.port}"

    async def connect(self) -> None:
        """The offerer starts listening (SignalingError if it cannot); the answerer waits."""
        if self.role != "offer" or self._listener is not None:
            return
        self._answer = asyncio.get_running_loop().create_future()
        try:
            self._listener = await asyncio.start_server(
                self._serve, self.host, self.port, limit=MAX_LINE_BYTES
            )
        except OSError as exc:
            raise SignalingError(
                f"cannot listen for signaling on {self.where}: {exc.strerror or exc}"
            ) from None

    def _refuse(self, who: str, why: str) -> None:
        self.refused += 1
        log.warning("signaling: refused %s: %s", who, why)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        who = _address(writer)
        task = asyncio.current_task()
        if len(self._serving) >= MAX_CONNECTIONS or task is None:
            self._refuse(who, f"more than {MAX_CONNECTIONS} signaling connections at once")
            await _hang_up(writer)
            return
        self._serving.add(task)
        try:
            answer = await self._exchange(reader, writer, who)
            if answer is not None and self._answer is not None and not self._answer.done():
                self._answer.set_result(answer)
                self._stop_listening()
        except asyncio.CancelledError:
            # Another client won, or we are closing. End quietly: asyncio's stream server
            # logs a traceback for a connection task that ends cancelled.
            pass
        finally:
            self._serving.discard(task)
            await _hang_up(writer)

    async def _exchange(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, who: str
    ) -> RTCSessionDescription | None:
        try:
            async with asyncio.timeout(HELLO_TIMEOUT_S):
                await read_message(reader, "hello")
            async with asyncio.timeout(ANSWER_TIMEOUT_S):
                await self._offer_ready.wait()
                assert self._offer is not None
                writer.write(self._offer)
                await writer.drain()
                answer = await read_message(reader, "answer")
        except Refused as exc:
            self._refuse(who, str(exc))
        except TimeoutError:
            self._refuse(who, "silent (no hello or answer in time)")
        except (ConnectionError, OSError) as exc:
            self._refuse(who, f"connection failed ({exc.strerror or type(exc).__name__})")
        else:
            return RTCSessionDescription(sdp=answer["sdp"], type="answer")
        return None

    def _stop_listening(self) -> None:
        if self._listener is not None:
            self._listener.close()
        current = asyncio.current_task()
        for task in list(self._serving):
            if task is not current:
                task.cancel()

    async def _dial(self) -> RTCSessionDescription:
        while True:
            try:
                reader, writer = await asyncio.open_connection(
                    self.host, self.port, limit=MAX_LINE_BYTES
                )
            except OSError:
                await asyncio.sleep(RETRY_INTERVAL_S)
                continue
            try:
                writer.write(encode(_HELLO))
                await writer.drain()
                async with asyncio.timeout(OFFER_TIMEOUT_S):
                    offer = await read_message(reader, "offer")
            except (Refused, TimeoutError, ConnectionError, OSError) as exc:
                why = str(exc) or "no offer in time"
                log.warning("signaling: %s is not a Rebound server (%s); retrying", self.where, why)
                await _hang_up(writer)
                await asyncio.sleep(RETRY_INTERVAL_S)
                continue
            self._writer = writer
            return RTCSessionDescription(sdp=offer["sdp"], type="offer")

    async def send(self, message: SignalingMessage) -> None:
        """Offerer: publish the offer to every (present and future) client. Answerer: answer."""
        if not isinstance(message, RTCSessionDescription):
            return  # BYE: the data channel says when a session ends
        line = encode({"type": message.type, "sdp": message.sdp})
        if self.role == "offer":
            self._offer = line
            self._offer_ready.set()
            return
        if self._writer is None:
            raise SignalingError("no signaling connection to answer on")
        try:
            self._writer.write(line)
            await self._writer.drain()
        except (ConnectionError, OSError) as exc:
            raise SignalingError(f"signaling connection failed: {exc}") from None

    async def receive(self) -> SignalingMessage | None:
        """Offerer: the first valid answer. Answerer: the offer (dials until there is one)."""
        if self.role == "answer":
            return await self._dial()
        if self._answer is None:
            raise SignalingError("connect() first")
        return await self._answer

    async def publish_metrics(self, metrics: dict[str, Any], *, final: bool) -> None:
        """TCP signaling has no observers: metrics are only printed by the server."""

    async def publish_series(self, text: str) -> None:
        """TCP signaling has no observers: the series is only written by `--series`."""

    async def close(self) -> None:
        """Stop listening, hang up every connection. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._stop_listening()
        if self._listener is not None:
            with contextlib.suppress(OSError):
                await self._listener.wait_closed()
        if self._writer is not None:
            await _hang_up(self._writer)
        if self._answer is not None and not self._answer.done():
            self._answer.cancel()
