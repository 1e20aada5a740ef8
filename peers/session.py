"""Session plumbing both peers share: a guarded peer connection, start-up phases that a
signal can interrupt and a deadline can bound, and failing loudly in one line."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

from aiortc import RTCPeerConnection

from peers import cli, sctp_guard
from peers.config import IceServer
from peers.signaling.base import Signaling, SignalingError

log = logging.getLogger("rebound.session")

CONNECTED = "connected"
INTERRUPTED = "interrupted"
TIMED_OUT = "timed out"
CHANNEL_OPEN_TIMEOUT_S = 10.0
"""After ICE and DTLS connected: how long the data channel may take to open."""


class PeerFailure(Exception):
    """The session failed at run time; the message is the one line the user reads (exit 1)."""


def one_line(exc: BaseException) -> str:
    """An exception as one short line: its message, else its type's name."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 300 else text[:297] + "..."


def exception_proof(
    handler: Callable[..., None], errors: Counter[str], name: str
) -> Callable[..., None]:
    """`handler` for an aiortc event: an exception is counted in `errors[name]` and logged,
    never raised into aiortc (pyee re-raises it there, where it can close the transport)."""

    def guarded(*args: Any) -> None:
        try:
            handler(*args)
        except Exception:
            errors[name] += 1
            log.debug("%s handler failed", name, exc_info=True)

    return guarded


def new_peer_connection(servers: list[IceServer]) -> RTCPeerConnection:
    """A peer connection with exactly these ICE servers, whose data channels a hostile peer
    cannot break (peers.sctp_guard)."""
    sctp_guard.install()
    return RTCPeerConnection(cli.rtc_configuration(servers))


async def first_of(*events: asyncio.Event, timeout: float | None = None) -> None:
    """Return when any of `events` is set, or after `timeout` seconds."""
    waiters = [asyncio.ensure_future(event.wait()) for event in events]
    try:
        await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()


async def connect_within(
    connecting: Awaitable[Any], stop: asyncio.Event, timeout: float | None
) -> str:
    """Run `connecting` until done, stopped or timed out.

    Returns CONNECTED, INTERRUPTED or TIMED_OUT; an exception from `connecting` propagates.
    """
    task = asyncio.ensure_future(connecting)
    stopped = asyncio.ensure_future(stop.wait())
    done, _ = await asyncio.wait(
        {task, stopped}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
    )
    stopped.cancel()
    if task in done:
        task.result()
        return CONNECTED
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await task
    return INTERRUPTED if stop.is_set() else TIMED_OUT


async def prepare(signaling: Signaling, stop: asyncio.Event) -> bool:
    """Check that the signaling channel can be used (listen; credentials and access).

    A channel this peer cannot use is a configuration problem: cli.UsageError (exit 2).
    False when interrupted meanwhile.
    """
    try:
        outcome = await connect_within(signaling.connect(), stop, None)
    except SignalingError as exc:
        raise cli.UsageError(str(exc)) from None
    except Exception as exc:  # a kubeconfig can provoke anything from its parsers and clients
        raise cli.UsageError(f"cannot use the signaling channel: {one_line(exc)}") from None
    return outcome == CONNECTED


async def fail(prog: str, signaling: Signaling, message: str, code: int) -> int:
    """Print `prog: error: message`, tell observers (ConfigMap signaling), return `code`."""
    print(f"{prog}: error: {message}", file=sys.stderr, flush=True)
    publish_error = getattr(signaling, "publish_error", None)
    if publish_error is not None:
        with contextlib.suppress(Exception):
            await publish_error(message)
    return code
