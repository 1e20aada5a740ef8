"""Video encoders that hold the session's target bitrate, and codec negotiation.

aiortc's own encoders start from fixed defaults (VP8 500 kbit/s within 250k..1.5M, H264
1 Mbit/s within 0.5M..3M at a fixed 30 fps) and let the receiver's REMB estimate move the
target. These subclasses keep aiortc's RTP packetization and create the libvpx/libx264
context themselves with the session's bitrate and frame rate; a REMB estimate is recorded
(`remb_bps`) but never followed, so the target is what the encoder aims at on the wire.
`install` hands one to a sender before its first frame (peers.aiortc_internals).
"""

from __future__ import annotations

import fractions
import multiprocessing
from collections.abc import Iterator
from typing import Any

import av
from aiortc import RTCRtpSender, RTCRtpTransceiver
from aiortc.codecs.h264 import H264Encoder
from aiortc.codecs.vpx import Vp8Encoder, number_of_threads
from aiortc.mediastreams import VIDEO_TIME_BASE, convert_timebase
from av.frame import Frame
from av.video.codeccontext import VideoCodecContext

from peers import aiortc_internals
from peers.config import Codec

MIME_TYPES: dict[Codec, str] = {"VP8": "video/VP8", "H264": "video/H264"}
KEYFRAME_INTERVAL_S = 10
"""At most this long between keyframes without a request (a PLI asks for one at once)."""
VBV_BUFFER_S = 1.0
"""Rate-control buffer, in seconds of target bitrate (aiortc's VP8 choice)."""


H264_LEVELS = (
    ("31", 3_600, 108_000),
    ("32", 5_120, 216_000),
    ("40", 8_192, 245_760),
    ("42", 8_704, 522_240),
    ("51", 36_864, 983_040),
    ("52", 36_864, 2_073_600),
)
"""H.264 levels (Annex A, table A-1): name, max macroblocks per frame, per second."""


def h264_level(width: int, height: int, fps: int) -> str:
    """The lowest H.264 level (3.1 or above) that holds `width` x `height` at `fps`."""
    per_frame = -(-width // 16) * -(-height // 16)
    for name, max_frame, max_rate in H264_LEVELS:
        if per_frame <= max_frame and per_frame * fps <= max_rate:
            return name
    return H264_LEVELS[-1][0]


class BitrateMixin:
    """A target bitrate REMB cannot move; the last REMB estimate is kept for the record."""

    bitrate_bps: int
    fps: int
    remb_bps: int | None = None

    def _codec_at_target(self, name: str, frame: av.VideoFrame) -> Any:
        """An encoder context `name` for `frame`'s size at the target rate and the session's
        fps, with a keyframe interval of KEYFRAME_INTERVAL_S (codec options left to the caller)."""
        codec: Any = av.CodecContext.create(name, "w")
        codec.width = frame.width
        codec.height = frame.height
        codec.bit_rate = self.bitrate_bps
        codec.pix_fmt = "yuv420p"
        codec.framerate = fractions.Fraction(self.fps, 1)
        codec.time_base = VIDEO_TIME_BASE
        codec.gop_size = KEYFRAME_INTERVAL_S * self.fps
        return codec

    @property
    def target_bitrate(self) -> int:
        """The session's target in bit/s (aiortc's sender reads and writes this name)."""
        return self.bitrate_bps

    @target_bitrate.setter
    def target_bitrate(self, bitrate: int) -> None:
        self.remb_bps = bitrate


class FixedRateVp8Encoder(BitrateMixin, Vp8Encoder):
    """libvpx VP8 in real-time CBR at `bitrate_bps` (aiortc's options otherwise)."""

    def __init__(self, bitrate_bps: int, fps: int) -> None:
        super().__init__()
        self.bitrate_bps = bitrate_bps
        self.fps = fps

    def _new_codec(self, frame: av.VideoFrame) -> VideoCodecContext:
        codec = self._codec_at_target("libvpx", frame)
        codec.qmin = 2
        codec.qmax = 56
        codec.options = {
            "bufsize": str(int(self.bitrate_bps * VBV_BUFFER_S)),
            "cpu-used": "-6",
            "deadline": "realtime",
            "lag-in-frames": "0",
            "minrate": str(self.bitrate_bps),  # minrate = maxrate = bit_rate: CBR
            "maxrate": str(self.bitrate_bps),
            "noise-sensitivity": "0",  # no denoiser: it would only remove the grain
            "overshoot-pct": "15",
            "partitions": "0",
            "static-thresh": "1",
            "undershoot-pct": "100",
        }
        codec.thread_count = number_of_threads(
            frame.width * frame.height, multiprocessing.cpu_count()
        )
        return codec  # type: ignore[no-any-return]

    def encode(self, frame: Frame, force_keyframe: bool = False) -> tuple[list[bytes], int]:
        """One frame as RTP payloads (VP8 payload descriptor + data) and its RTP timestamp."""
        assert isinstance(frame, av.VideoFrame)
        if frame.format.name != "yuv420p":
            frame = frame.reformat(format="yuv420p")
        if self.codec is not None and (
            frame.width != self.codec.width or frame.height != self.codec.height
        ):
            self.codec = None
        if self.codec is None:
            self.codec = self._new_codec(frame)
        frame.pict_type = (
            av.video.frame.PictureType.I if force_keyframe else av.video.frame.PictureType.NONE
        )
        data = b"".join(bytes(packet) for packet in self.codec.encode(frame))
        payloads = self._packetize(data, self.picture_id)
        assert frame.pts is not None and frame.time_base is not None
        timestamp = convert_timebase(frame.pts, frame.time_base, VIDEO_TIME_BASE)
        self.picture_id = (self.picture_id + 1) % (1 << 15)
        return payloads, timestamp


class FixedRateH264Encoder(BitrateMixin, H264Encoder):
    """libx264 (zerolatency, baseline) at `bitrate_bps` with a VBV, at the session's fps."""

    def __init__(self, bitrate_bps: int, fps: int) -> None:
        super().__init__()
        self.bitrate_bps = bitrate_bps
        self.fps = fps

    def _new_codec(self, frame: av.VideoFrame) -> VideoCodecContext:
        codec = self._codec_at_target("libx264", frame)
        codec.options = {
            "level": h264_level(frame.width, frame.height, self.fps),
            "tune": "zerolatency",
            "preset": "veryfast",
            "x264-params": "scenecut=0",  # keyframes on request (PLI) or every 10 s only
            "maxrate": str(self.bitrate_bps),
            "bufsize": str(int(self.bitrate_bps * VBV_BUFFER_S)),
        }
        codec.profile = "Baseline"
        return codec  # type: ignore[no-any-return]

    def _encode_frame(self, frame: av.VideoFrame, force_keyframe: bool) -> Iterator[bytes]:
        if self.codec is not None and (
            frame.width != self.codec.width or frame.height != self.codec.height
        ):
            self.codec = None
        if self.codec is None:
            self.codec = self._new_codec(frame)
        frame.pict_type = (
            av.video.frame.PictureType.I if force_keyframe else av.video.frame.PictureType.NONE
        )
        data = b"".join(bytes(packet) for packet in self.codec.encode(frame))
        if data:
            yield from self._split_bitstream(data)


Encoder = FixedRateVp8Encoder | FixedRateH264Encoder


LIBRARIES: dict[Codec, str] = {"VP8": "libvpx", "H264": "libx264"}


def unavailable(codec: Codec) -> str | None:
    """Why this PyAV build cannot encode `codec` (None: it can)."""
    library = LIBRARIES[codec]
    try:
        av.codec.Codec(library, "w")
    except Exception:  # PyAV raises UnknownCodecError, or FFmpegError on older builds
        return f"--codec {codec}: this PyAV build has no {library} encoder"
    return None


def new_encoder(codec: Codec, bitrate_kbps: int, fps: int) -> Encoder:
    """An encoder for `codec` holding `bitrate_kbps` at `fps` frames per second."""
    if codec == "H264":
        return FixedRateH264Encoder(bitrate_kbps * 1000, fps)
    return FixedRateVp8Encoder(bitrate_kbps * 1000, fps)


def prefer(transceiver: RTCRtpTransceiver, codec: Codec) -> None:
    """Offer only `codec` (every profile aiortc has for it) and its retransmission format."""
    capabilities = RTCRtpSender.getCapabilities("video").codecs
    wanted = MIME_TYPES[codec].lower()
    chosen = [c for c in capabilities if c.mimeType.lower() == wanted]
    chosen += [c for c in capabilities if c.mimeType.lower() == "video/rtx"]
    transceiver.setCodecPreferences(chosen)


def negotiated(transceiver: RTCRtpTransceiver) -> Codec | None:
    """The codec the transceiver sends with after the answer (None if not VP8/H264)."""
    mime_types = aiortc_internals.negotiated_mime_types(transceiver)
    if not mime_types:
        return None
    mime = mime_types[0].lower()
    for name, mime_type in MIME_TYPES.items():
        if mime == mime_type.lower():
            return name
    return None


def install(sender: RTCRtpSender, encoder: Encoder) -> None:
    """Have `sender` use `encoder` from its first frame on."""
    aiortc_internals.set_encoder(sender, encoder)
