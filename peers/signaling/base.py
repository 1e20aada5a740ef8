"""The small signaling interface both peers talk to.

A signaling channel carries exactly one SDP offer (server -> client) and one SDP answer
(client -> server), plus an optional BYE. Implementations: `tcp.TcpSignaling` (aiortc's
TCP socket signaling, the local default) and `configmap.ConfigMapSignaling` (Kubernetes).
`publish_metrics` lets the server expose live/final metrics where the transport can carry
them (the ConfigMap); TCP signaling ignores it.
"""

from __future__ import annotations

from typing import Any, Literal, Protocol

from aiortc import RTCSessionDescription
from aiortc.contrib.signaling import BYE

Role = Literal["offer", "answer"]
SignalingMessage = RTCSessionDescription | object  # object: aiortc's BYE sentinel

__all__ = ["BYE", "Role", "Signaling", "SignalingError", "SignalingMessage"]


class SignalingError(RuntimeError):
    """Signaling failed in a way the user must hear about (timeout, bad peer, API error)."""


class Signaling(Protocol):
    """One peer's end of the signaling channel."""

    role: Role

    async def connect(self) -> None:
        """Prepare the channel (listen, open, or check access). Must not wait for the peer."""

    async def send(self, message: SignalingMessage) -> None:
        """Send our session description (or BYE) to the other peer."""

    async def receive(self) -> SignalingMessage | None:
        """Wait for the other peer's description; None when the channel closed."""

    async def publish_metrics(self, metrics: dict[str, Any], *, final: bool) -> None:
        """Expose session metrics to observers (the operator); may be a no-op."""

    async def publish_series(self, text: str) -> None:
        """Store the downsampled per-frame series (JSON Lines, bounded) for the session's
        report; may be a no-op."""

    async def close(self) -> None:
        """Release sockets, watches and threads. Idempotent."""
