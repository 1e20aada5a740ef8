"""Find the ball's centre with sub-pixel accuracy (runs inside process_a).

Two passes, both with OpenCV's C++ moments: a coarse centroid of the pixels brighter than
mid-way between background and ball, then an intensity-weighted centroid over a window
around it, weighting each pixel by how far it rises above the background. The weighting
uses the anti-aliased rim, which is what makes the estimate sub-pixel; the window keeps
codec noise elsewhere in the frame from pulling the centroid.
"""

from __future__ import annotations

from typing import cast

import cv2
import numpy as np
import numpy.typing as npt

from peers.config import MARKER_BAND_PX

MIN_CONTRAST = 40
"""Below this ball-to-background difference (grey levels) the frame holds no ball."""
WINDOW_MARGIN_PX = 4


def to_luma(frame: npt.NDArray[np.uint8]) -> npt.NDArray[np.uint8]:
    """A single-channel view of `frame` (BGR frames are converted)."""
    if frame.ndim == 3:
        return cast(npt.NDArray[np.uint8], cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY))
    return frame


def locate(frame: npt.NDArray[np.uint8], top: int = MARKER_BAND_PX) -> tuple[float, float] | None:
    """The ball centre (x, y) in frame pixels, or None when no ball is visible.

    `frame` is luma (H x W) or BGR (H x W x 3); rows above `top` (the marker band) are ignored.
    """
    arena = to_luma(frame)[top:]
    if arena.size == 0:
        return None
    background = int(np.median(arena[::8, ::8]))
    _, peak, _, _ = cv2.minMaxLoc(arena)
    contrast = int(peak) - background
    if contrast < MIN_CONTRAST:
        return None
    _, mask = cv2.threshold(arena, background + contrast / 2, 255, cv2.THRESH_BINARY)
    coarse = cv2.moments(mask, binaryImage=True)
    if coarse["m00"] == 0:
        return None
    cx, cy = coarse["m10"] / coarse["m00"], coarse["m01"] / coarse["m00"]
    half = int(np.sqrt(coarse["m00"] / np.pi)) + WINDOW_MARGIN_PX
    height, width = arena.shape
    x0, x1 = max(0, int(cx) - half), min(width, int(cx) + half + 2)
    y0, y1 = max(0, int(cy) - half), min(height, int(cy) + half + 2)
    floor = background + max(2, contrast // 32)
    weights = cv2.subtract(arena[y0:y1, x0:x1], floor)  # type: ignore[call-overload]
    fine = cv2.moments(weights)
    if fine["m00"] == 0:
        return None
    return x0 + fine["m10"] / fine["m00"], top + y0 + fine["m01"] / fine["m00"]
