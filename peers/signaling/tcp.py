"""aiortc's TCP socket signaling, with a client that waits for the server to come up.

aiortc's `TcpSocketSignaling` makes whichever side sends first the listener: the server
(offerer) listens on host:port and the client (answerer) connects. Started in either order,
the client retries the connection until its caller's timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from aiortc.contrib.signaling import TcpSocketSignaling

from peers.signaling.base import Role, SignalingError, SignalingMessage

RETRY_INTERVAL_S = 0.2


class TcpSignaling:
    """One end of TCP socket signaling; `role` picks listener (offer) or dialer (answer)."""

    def __init__(self, role: Role, host: str, port: int) -> None:
        self.role: Role = role
        self.host = host
        self.port = port
        self._inner = TcpSocketSignaling(host, port)

    async def connect(self) -> None:
        """Nothing to prepare: the offerer listens on first send, the answerer dials on receive."""

    async def _dial(self) -> None:
        while True:
            try:
                await self._inner._connect(server=False)
                return
            except OSError:
                await asyncio.sleep(RETRY_INTERVAL_S)

    async def send(self, message: SignalingMessage) -> None:
        """Send a description; the offerer first waits for the answerer to connect."""
        try:
            await self._inner.send(message)  # type: ignore[arg-type]
        except OSError as exc:
            raise SignalingError(
                f"cannot listen for signaling on {self.host}:{self.port}: {exc.strerror or exc}"
            ) from None

    async def receive(self) -> SignalingMessage | None:
        """Wait for the other peer's description (None when it hung up)."""
        if self.role == "answer":
            await self._dial()
        try:
            return await self._inner.receive()
        except (OSError, ValueError) as exc:
            raise SignalingError(f"signaling connection failed: {exc}") from None

    async def publish_metrics(self, metrics: dict[str, Any], *, final: bool) -> None:
        """TCP signaling has no observers: metrics are only printed by the server."""

    async def close(self) -> None:
        """Say BYE if connected, then close the socket and the listener."""
        with contextlib.suppress(OSError, RuntimeError):
            await self._inner.close()
