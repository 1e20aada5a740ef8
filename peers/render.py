"""Draw the ball anti-aliased at a sub-pixel position, plus the frame-identity marker."""

from __future__ import annotations

import cv2
import numpy as np
import numpy.typing as npt

from peers import marker
from peers.ball import Position
from peers.config import MARKER_BAND_PX

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
    if len(set(background)) == 1:
        frame.fill(background[0])  # 40x faster than broadcasting the tuple
    else:
        frame[:] = background
    center = (round(position.x * _SCALE), round(position.y * _SCALE))
    cv2.circle(frame, center, round(radius * _SCALE), color, -1, cv2.LINE_AA, SUBPIXEL_BITS)
    if frame_index is not None:
        marker.stamp(frame, frame_index)
    return frame


LUMA_BLACK = 16
LUMA_WHITE = 235
"""Limited-range (BT.601) luma of black and white: what converting the BGR frame gave."""
GRAIN_LEVELS = 8
"""Peak of the background grain in luma levels: far below the detector's floor (the
background median plus 1/32 of the ball's contrast, about 7 levels above the grain's top)."""
GRAIN_BANKS = 3
GRAIN_SLACK_PX = 64


class Grain:
    """A faint moving grain for the arena's luma, so the encoder has detail to spend its
    target bitrate on (a black frame with one ball needs ~150 kbit/s, whatever the target).

    Deterministic: frame i always gets the same grain. Consecutive frames draw from
    different banks at shifted offsets, so no frame predicts the next one.
    """

    def __init__(self, width: int, height: int, levels: int = GRAIN_LEVELS, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        shape = (GRAIN_BANKS, height + GRAIN_SLACK_PX, width + GRAIN_SLACK_PX)
        self._banks = rng.integers(0, levels + 1, size=shape, dtype=np.uint8)
        self._offsets = rng.integers(0, GRAIN_SLACK_PX, size=(256, 2))
        self.width = width
        self.height = height

    def pattern(self, frame_index: int, top: int) -> Image:
        """The grain of frame `frame_index` for rows `top`.. of the frame (a view)."""
        dy, dx = self._offsets[frame_index % len(self._offsets)]
        bank: Image = self._banks[frame_index % GRAIN_BANKS]
        return bank[dy + top : dy + self.height, dx : dx + self.width]

    def add_to(self, luma: Image, frame_index: int, top: int) -> None:
        """Add frame `frame_index`'s grain to rows `top`.. of `luma` in place.

        `luma` is limited-range (<= 235), so the sum never wraps.
        """
        region = luma[top:]
        np.add(region, self.pattern(frame_index, top), out=region)


def draw_luma(
    position: Position | None,
    radius: float,
    *,
    frame_index: int,
    out: Image,
    grain: Grain | None = None,
) -> Image:
    """Render one frame straight into limited-range luma (`out`, H x W): the ball (unless
    `position` is None), the marker and the grain. The encoder's frame needs nothing else
    (chroma stays neutral), so no BGR frame and no colour conversion are made."""
    out.fill(LUMA_BLACK)
    if position is not None:
        center = (round(position.x * _SCALE), round(position.y * _SCALE))
        cv2.circle(out, center, round(radius * _SCALE), LUMA_WHITE, -1, cv2.LINE_AA, SUBPIXEL_BITS)
    marker.stamp(out, frame_index, on=LUMA_WHITE, off=LUMA_BLACK)
    if grain is not None:
        grain.add_to(out, frame_index, MARKER_BAND_PX)
    return out
