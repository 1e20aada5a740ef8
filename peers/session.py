"""Session plumbing both peers share: a guarded peer connection, start-up phases that a
signal can interrupt and a deadline can bound, and failing loudly in one line."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from aiortc import RTCPeerConnection

from peers import cli, sctp_guard
from peers.config import IceServer
from peers.signaling.base import Signaling, SignalingError

if TYPE_CHECKING:
    from peers.channel import PeerChannel

log = logging.getLogger("rebound.session")

CONNECTED = "connected"
INTERRUPTED = "interrupted"
TIMED_OUT = "timed out"
CHANNEL_OPEN_TIMEOUT_S = 10.0
"""After ICE and DTLS connected: how long the data channel may take to open."""
WATCH_INTERVAL_S = 0.25


class PeerFailure(Exception):
    """The session failed at run time; the message is the one line the user reads (exit 1)."""


class NoPeer(Exception):
    """The other peer did not show up within --connect-timeout (exit 3)."""


class Interrupted(Exception):
    """SIGINT/SIGTERM arrived before the session connected (exit 130)."""


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


async def within(
    awaitable: Awaitable[Any],
    stop: asyncio.Event,
    timeout: float | None = None,
    on_timeout: Exception | None = None,
) -> None:
    """Await `awaitable`; raise Interrupted if `stop` is set first, `on_timeout` if
    `timeout` seconds pass first."""
    outcome = await connect_within(awaitable, stop, timeout)
    if outcome == INTERRUPTED:
        raise Interrupted
    if outcome == TIMED_OUT:
        raise on_timeout or TimeoutError()


async def prepare(signaling: Signaling, stop: asyncio.Event) -> None:
    """Check that the signaling channel can be used (listen; credentials and access).

    A channel this peer cannot use is a configuration problem: cli.UsageError (exit 2).
    """
    try:
        await within(signaling.connect(), stop)
    except SignalingError as exc:
        raise cli.UsageError(str(exc)) from None
    except Interrupted:
        raise
    except Exception as exc:  # a kubeconfig can provoke anything from its parsers and clients
        raise cli.UsageError(f"cannot use the signaling channel: {one_line(exc)}") from None


async def channel_opens(opened: asyncio.Event, stop: asyncio.Event) -> None:
    """Wait for the data channel after ICE/DTLS connected; PeerFailure if it never opens."""
    await within(
        opened.wait(),
        stop,
        CHANNEL_OPEN_TIMEOUT_S,
        PeerFailure(
            f"the data channel did not open within {CHANNEL_OPEN_TIMEOUT_S:g} s of connecting"
        ),
    )


def link_failure(
    other: str, channel: PeerChannel, lost: asyncio.Event, abort_reason: str | None
) -> str | None:
    """Why the link to the `other` peer ("client"/"server") cannot go on, or None: it
    aborted (`abort_reason` not None), the connection or data channel closed, or the
    channel went silent."""
    if abort_reason is not None:
        return f"the {other} aborted the session ({abort_reason})"
    if lost.is_set() or channel.closed.is_set():
        return f"the {other} disconnected before the session ended"
    if channel.silent():
        return (
            f"the {other} went silent (no data-channel message for {channel.silence.limit_s:g} s)"
        )
    return None


async def watch(
    until: tuple[asyncio.Event, ...],
    wake: tuple[asyncio.Event, ...],
    failure: Callable[[], str | None],
    tick: Callable[[float], Awaitable[None]],
    seconds: float | None = None,
) -> str | None:
    """Run `tick(now)` about every WATCH_INTERVAL_S until an event in `until` is set or
    `seconds` pass (None), or `failure()` names a reason to give up (that reason).
    Events in `wake` cut the wait short (they usually make `failure()` speak)."""
    deadline = None if seconds is None else time.monotonic() + seconds
    while not any(event.is_set() for event in until):
        reason = failure()
        if reason is not None:
            return reason
        now = time.monotonic()
        if deadline is not None and now >= deadline:
            return None
        await tick(now)
        await first_of(*until, *wake, timeout=WATCH_INTERVAL_S)
    return None


async def run_peer(
    session: Awaitable[str | None],
    *,
    prog: str,
    signaling: Signaling,
    close: Callable[[], Awaitable[None]],
) -> int:
    """A peer's exit code for `session` (None: completed, else the reason it failed), per the
    contract: 0 completed, 1 failed, 3 no peer in time, 130 interrupted before connecting.
    cli.UsageError (exit 2) propagates. `close()` runs in every case."""
    try:
        try:
            failure = await session
        except Interrupted:
            return cli.EXIT_INTERRUPTED
        except NoPeer as exc:
            return await fail(prog, signaling, str(exc), cli.EXIT_TIMEOUT)
        except (SignalingError, PeerFailure) as exc:
            return await fail(prog, signaling, str(exc), cli.EXIT_FAILED)
        if failure is not None:
            return await fail(prog, signaling, failure, cli.EXIT_FAILED)
        return cli.EXIT_OK
    finally:
        await close()


async def fail(prog: str, signaling: Signaling, message: str, code: int) -> int:
    """Print `prog: error: message`, tell observers (ConfigMap signaling), return `code`."""
    print(f"{prog}: error: {message}", file=sys.stderr, flush=True)
    publish_error = getattr(signaling, "publish_error", None)
    if publish_error is not None:
        with contextlib.suppress(Exception):
            await publish_error(message)
    return code
