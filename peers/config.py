"""Session parameters shared by the peers' CLI, the pod builders and the operator.

`SessionSpec` is the one definition of what a bouncing-ball session is. The CRD's
`spec` mirrors it field for field (camelCase aliases), the operator turns it into peer
arguments with `SessionSpec.to_peer_args()`, and the peers' CLI parses the same flags.
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator
from pydantic.alias_generators import to_camel

MARKER_BAND_PX = 16
"""Rows at the top of every frame reserved for the frame-identity marker (see peers.marker)."""

SUMMARY_KEYS: tuple[str, ...] = (
    "frames_sent",
    "coordinates_received",
    "frames_matched",
    "frames_dropped_by_client",
    "mean_error_px",
    "p95_error_px",
    "max_error_px",
    "achieved_fps",
    "latency_ms_p50",
    "latency_ms_p95",
)
"""Keys of the server's summary JSON, the ConfigMap's metrics and the status' metrics."""

MIN_WIDTH = 128
MAX_WIDTH = 3840
MIN_HEIGHT = 64
MAX_HEIGHT = 2160


_ICE_URL = re.compile(
    r"(?P<scheme>stuns?|turns?):(?P<host>[A-Za-z0-9._-]{1,253})"
    r"(?::(?P<port>[0-9]{1,5}))?(?:\?transport=(?P<transport>udp|tcp))?"
)


def check_ice_url(url: str) -> str:
    """`url` if aiortc can use it (RFC 7064/7065 shapes, port 1-65535); ValueError otherwise."""
    match = _ICE_URL.fullmatch(url)
    if match is None:
        raise ValueError(
            f"{url[:80]!r} is not a STUN/TURN URL "
            "(stun:HOST[:PORT], stuns:..., turn:HOST[:PORT][?transport=udp|tcp], turns:...)"
        )
    if match["port"] is not None and not 1 <= int(match["port"]) <= 65535:
        raise ValueError(f"{url[:80]!r}: port {match['port']} is not 1-65535")
    if match["transport"] is not None and match["scheme"].startswith("stun"):
        raise ValueError(f"{url[:80]!r}: only turn: and turns: URLs take ?transport=")
    return url


IceUrl = Annotated[str, Field(min_length=1, max_length=512), AfterValidator(check_ice_url)]


class IceServer(BaseModel):
    """One STUN/TURN server, shaped like the WebRTC `RTCIceServer` dictionary."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")

    urls: list[IceUrl] = Field(min_length=1, max_length=8)
    username: str | None = None
    credential: str | None = None


class SessionSpec(BaseModel):
    """What a bouncing-ball session looks like: frame, ball, pacing and end condition."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")

    width: int = Field(640, ge=MIN_WIDTH, le=MAX_WIDTH, description="Frame width in pixels.")
    height: int = Field(480, ge=MIN_HEIGHT, le=MAX_HEIGHT, description="Frame height in pixels.")
    fps: int = Field(30, ge=1, le=120, description="Frames per second the server sends.")
    radius: float = Field(20.0, ge=2.0, le=500.0, description="Ball radius in pixels.")
    speed: float = Field(240.0, ge=0.0, le=20000.0, description="Ball speed in pixels per second.")
    seed: int = Field(0, ge=0, le=2**31 - 1, description="Seeds the start position and direction.")
    frames: int = Field(300, ge=0, le=10_000_000, description="Frames to send; 0 = no limit.")
    duration_seconds: float = Field(0.0, ge=0.0, le=86_400.0, description="Seconds; 0 = no limit.")

    @model_validator(mode="after")
    def _ball_fits(self) -> SessionSpec:
        arena_height = self.height - MARKER_BAND_PX
        if 2 * self.radius + 2 > min(self.width, arena_height):
            raise ValueError(
                f"radius {self.radius:g} does not fit a {self.width}x{self.height} frame "
                f"(the ball needs 2*radius+2 <= {min(self.width, arena_height)} px)"
            )
        return self

    @property
    def unlimited(self) -> bool:
        """True when the session runs until it is stopped from outside."""
        return self.frames == 0 and self.duration_seconds == 0

    def to_peer_args(self) -> list[str]:
        """The server CLI flags that reproduce this spec (used to build the server Pod)."""
        return [
            "--width",
            str(self.width),
            "--height",
            str(self.height),
            "--fps",
            str(self.fps),
            "--radius",
            f"{self.radius:g}",
            "--speed",
            f"{self.speed:g}",
            "--seed",
            str(self.seed),
            "--frames",
            str(self.frames),
            "--duration",
            f"{self.duration_seconds:g}",
        ]
