"""Crops of received frames for the server's report: taken by the client, rebuilt by the
server.

The client (`SampleTaker`) keeps, about every SAMPLE_INTERVAL_S, one received frame until
its detection comes back, then sends a grey PNG crop of it around the detection in chunks
(`protocol.encode_sample`): the report's strip then shows what the detector really saw,
codec artefacts included. Cost: a marker read and a small PNG every couple of seconds.

The server (`SampleCollector`) rebuilds crops from chunks as untrusted input: chunks must
come in order and agree with each other; the PNG is bounded and checked; at most
MAX_SAMPLES crops are kept, thinned evenly as the session goes on. Anything else is counted
and ignored.
"""

from __future__ import annotations

import base64
import binascii
from collections import Counter
from typing import Any

import cv2
import numpy as np

from peers import marker, protocol, series
from peers.tracker import Detection

SAMPLE_INTERVAL_S = 2.0
CROP_PX = 80
"""Side of a crop as sent; a larger frame's crop is scaled down to it."""
GIVE_UP_FRAMES = 10
"""A kept frame whose detection has not come after this many newer frames is dropped."""
MAX_SAMPLES = 32


def luma_of(frame: Any) -> np.ndarray[Any, np.dtype[np.uint8]]:
    """The luma plane of a decoded frame as an H x W array (a view, no copy)."""
    if frame.format.name != "yuv420p":
        frame = frame.reformat(format="yuv420p")
    plane = frame.planes[0]
    luma = np.frombuffer(plane, dtype=np.uint8)
    return luma[: frame.height * plane.line_size].reshape(frame.height, plane.line_size)[
        :, : frame.width
    ]


def crop(
    luma: np.ndarray[Any, np.dtype[np.uint8]], x: float, y: float
) -> tuple[bytes, int, int, float] | None:
    """A PNG of the square around (x, y), its top-left frame pixel and its scale."""
    height, width = luma.shape
    side = min(max(CROP_PX, min(width, height) // 6), width, height)
    x0 = int(min(max(round(x) - side // 2, 0), width - side))
    y0 = int(min(max(round(y) - side // 2, 0), height - side))
    region = luma[y0 : y0 + side, x0 : x0 + side]
    scale = side / CROP_PX if side > CROP_PX else 1.0
    if scale > 1.0:
        region = np.asarray(
            cv2.resize(region, (CROP_PX, CROP_PX), interpolation=cv2.INTER_AREA), dtype=np.uint8
        )
    ok, png = cv2.imencode(".png", np.ascontiguousarray(region), [cv2.IMWRITE_PNG_COMPRESSION, 9])
    return (png.tobytes(), x0, y0, scale) if ok else None


class SampleTaker:
    """The client's side: which frame to sample, and its chunks once its detection came."""

    def __init__(self, interval_s: float = SAMPLE_INTERVAL_S) -> None:
        self.interval_s = interval_s
        self._next_at = 0.0
        self._kept: tuple[int, Any] | None = None
        self._frames_since = 0
        self.sent = 0

    def on_frame(self, frame: Any, now: float) -> None:
        """A decoded frame arrived; keep it when a sample is due."""
        if self._kept is not None:
            self._frames_since += 1
            if self._frames_since > GIVE_UP_FRAMES:
                self._kept = None  # no detection for it (no ball, dropped): take another
            return
        if now < self._next_at:
            return
        identity = marker.read(luma_of(frame))
        if identity is not None and identity != marker.FLUSH_INDEX:
            self._kept, self._frames_since = (identity, frame), 0

    def on_detection(self, detection: Detection, now: float) -> list[str]:
        """The messages to send for the kept frame if this is its detection, else []."""
        if self._kept is None or self._kept[0] != detection.frame:
            return []
        _, frame = self._kept
        self._kept = None
        self._next_at = now + self.interval_s
        taken = crop(luma_of(frame), detection.x, detection.y)
        if taken is None:
            return []
        png, x0, y0, scale = taken
        messages = protocol.encode_sample(detection.frame, x0, y0, scale, png)
        self.sent += bool(messages)
        return messages


class SampleCollector:
    """The server's side: crops rebuilt from chunks, bounded and evenly thinned."""

    def __init__(self, max_samples: int = MAX_SAMPLES) -> None:
        self.max_samples = max_samples
        self.samples: list[series.Sample] = []
        self.rejected: Counter[str] = Counter()
        self._stride = 1
        self._seen = 0
        self._parts: list[str] = []
        self._head: protocol.SampleChunk | None = None

    def on_chunk(self, chunk: protocol.SampleChunk) -> None:
        """Take one chunk (already decoded and checked by the protocol)."""
        head = self._head
        if chunk.index == 0:
            if head is not None:
                self.rejected["sample_incomplete"] += 1
            self._head, self._parts = chunk, [chunk.data]
        elif head is None or (chunk.frame, chunk.count, len(self._parts)) != (
            head.frame,
            head.count,
            chunk.index,
        ):
            self.rejected["sample_out_of_order"] += 1
            self._head, self._parts = None, []
            return
        else:
            self._parts.append(chunk.data)
        assert self._head is not None
        if len(self._parts) == self._head.count:
            self._complete(self._head, "".join(self._parts))
            self._head, self._parts = None, []

    def _complete(self, head: protocol.SampleChunk, text: str) -> None:
        try:
            png = base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError):
            self.rejected["sample_not_base64"] += 1
            return
        if len(png) > series.MAX_SAMPLE_PNG_BYTES or not png.startswith(b"\x89PNG\r\n\x1a\n"):
            self.rejected["sample_not_png"] += 1
            return
        self._seen += 1
        if (self._seen - 1) % self._stride:
            return
        self.samples.append(series.Sample(head.frame, head.x0, head.y0, head.scale, png))
        if len(self.samples) > self.max_samples:
            self.samples = self.samples[::2]
            self._stride *= 2

    def lines(self) -> list[str]:
        """The samples as series lines."""
        return [series.sample_line(sample) for sample in self.samples]
