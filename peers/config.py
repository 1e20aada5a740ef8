"""Session parameters shared by the peers' CLI, the pod builders and the operator.

`SessionSpec` is the one definition of what a bouncing-ball session is. The CRD's
`spec` mirrors it field for field (camelCase aliases), the operator turns it into peer
arguments with `SessionSpec.to_peer_args()`, and the peers' CLI parses the same flags.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

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
SUMMARY_EXTRA_KEYS: tuple[str, ...] = ("session", "client")
"""Keys the summary document adds after SUMMARY_KEYS: the session parameters (SessionSpec
fields) and the client's last counters (null until the client reported)."""
CLIENT_COUNTER_KEYS: tuple[str, ...] = (
    "received",
    "dropped",
    "unreadable",
    "no_ball",
    "incomplete",
    "final",
)

Codec = Literal["VP8", "H264"]
CODECS: tuple[Codec, ...] = ("VP8", "H264")
MIN_BITRATE_KBPS = 50
MAX_BITRATE_KBPS = 50_000
IceCandidateType = Literal["host", "srflx", "prflx", "relay"]
IceProtocol = Literal["udp", "tcp"]
MAX_SUMMARY_COUNT = 2**53 - 1
MAX_RTT_MS = 60_000.0
MAX_MEASURED_BITRATE_KBPS = 1e6

Count = Annotated[int, Field(ge=0, le=MAX_SUMMARY_COUNT)]


class LinkSummary(BaseModel):
    """The summary's media and path keys: codec and bitrate, frames the link spoilt, the
    selected ICE candidate pair and what RTCP measured (docs/CONTRACTS.md).

    The server fills it; whoever reads a server's summary (the operator) validates the
    untrusted JSON with it: every key present (null where unknown), strict types, bounds.
    """

    model_config = ConfigDict(strict=True, allow_inf_nan=False, extra="ignore", frozen=True)

    codec: Codec | None
    """The codec negotiated for the video track (null before negotiation)."""
    target_bitrate_kbps: int = Field(ge=MIN_BITRATE_KBPS, le=MAX_BITRATE_KBPS)
    measured_bitrate_kbps: float | None = Field(ge=0.0, le=MAX_MEASURED_BITRATE_KBPS)
    """Video RTP payload bits the server sent per second of streaming."""
    frames_unreadable: Count | None
    """Frames whose identity marker did not survive (client's counter; null: never reported)."""
    frames_incomplete: Count | None
    """Frames the client's receiver gave up on: incomplete in time, late, or undecodable
    until the next keyframe (client's counter; null: never reported)."""
    ice_local_candidate_type: IceCandidateType | None
    ice_remote_candidate_type: IceCandidateType | None
    ice_protocol: IceProtocol | None
    rtt_ms: float | None = Field(ge=0.0, le=MAX_RTT_MS)
    """Round-trip time from RTCP receiver reports (smoothed as aiortc does)."""
    packets_lost: Count | None
    """Video RTP packets the client reported lost (last receiver report)."""
    packet_loss_pct: float | None = Field(ge=0.0, le=100.0)
    """packets_lost as a percentage of the packets the client expected by that report."""


LINK_SUMMARY_KEYS: tuple[str, ...] = tuple(LinkSummary.model_fields)
"""Keys the summary carries after SUMMARY_KEYS (in this order)."""

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
    codec: Codec = Field("VP8", description="Video codec: the only one the server offers.")
    bitrate_kbps: int = Field(
        1000,
        ge=MIN_BITRATE_KBPS,
        le=MAX_BITRATE_KBPS,
        description="Target video bitrate in kbit/s; the encoder holds it (REMB does not move it).",
    )

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
            "--codec",
            self.codec,
            "--bitrate-kbps",
            str(self.bitrate_kbps),
        ]
