"""Draw the ball anti-aliased at a sub-pixel position, plus the frame-identity marker."""

from __future__ import annotations

import cv2
import numpy as np
import numpy.typing as npt

from peers import marker
from peers.ball import Position

SUBPIXEL_BITS = 8
"""cv2 drawing `shift`: coordinates carry 8 fractional bits (1/256 px)."""
_SCALE = 1 << SUBPIXEL_BITS

Image = npt.NDArray[np.uint8]

BALL_BGR = (255, 255, 255)
BACKGROUND_BGR = (0, 0, 0)


def new_canvas(width: int, height: int) -> Image:
    """An empty BGR frame of the given size."""
    return np.zeros((height, width, 3), dtype=np.uint8)


def draw(
    position: Position,
    radius: float,
    width: int,
    height: int,
    *,
    frame_index: int | None = None,
    out: Image | None = None,
    color: tuple[int, int, int] = BALL_BGR,
    background: tuple[int, int, int] = BACKGROUND_BGR,
) -> Image:
    """Render one BGR frame: plain background, the ball at `position`, and the marker.

    `out` (a width x height x 3 uint8 array) is reused when given, so the hot path allocates
    nothing. The marker band encodes `frame_index` when given.
    """
    frame = out if out is not None else new_canvas(width, height)
    frame[:] = background
    center = (round(position.x * _SCALE), round(position.y * _SCALE))
    cv2.circle(frame, center, round(radius * _SCALE), color, -1, cv2.LINE_AA, SUBPIXEL_BITS)
    if frame_index is not None:
        marker.stamp(frame, frame_index)
    return frame
