"""What the live view, the windows and the recordings draw over a frame. Pure.

Truth is a green circle (the ball's true outline), the client's detection a red cross; a few
lines of text (fps, error) sit in a dark box under the marker band. Colours are BGR.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np
import numpy.typing as npt

from peers import render
from peers.ball import BallModel, Position
from peers.config import MARKER_BAND_PX

Image = npt.NDArray[np.uint8]

TRUTH_BGR = (0, 200, 0)
DETECTION_BGR = (0, 0, 255)
TEXT_BGR = (255, 255, 255)
BOX_BGR = (40, 40, 40)
SUBPIXEL_BITS = 4
_SCALE = 1 << SUBPIXEL_BITS


def _point(p: Position) -> tuple[int, int]:
    return round(p.x * _SCALE), round(p.y * _SCALE)


def draw_truth(frame: Image, truth: Position, radius: float) -> None:
    """The true ball as a green circle (outline), in place."""
    thickness = max(2, round(min(frame.shape[:2]) / 240))
    cv2.circle(frame, _point(truth), round(radius * _SCALE), TRUTH_BGR, thickness, cv2.LINE_AA,
               SUBPIXEL_BITS)  # fmt: skip


def draw_detection(frame: Image, detected: Position, size: float) -> None:
    """The detection as a red cross of half-width `size` px, in place."""
    thickness = max(2, round(min(frame.shape[:2]) / 160))
    d = round(size * _SCALE)
    x, y = _point(detected)
    for (x0, y0), (x1, y1) in (((x - d, y - d), (x + d, y + d)), ((x - d, y + d), (x + d, y - d))):
        cv2.line(frame, (x0, y0), (x1, y1), DETECTION_BGR, thickness, cv2.LINE_AA, SUBPIXEL_BITS)


def draw_text(frame: Image, lines: Sequence[str], top: int = MARKER_BAND_PX + 4) -> None:
    """Lines of text in a dark box at the top left (below the marker band), in place."""
    if not lines:
        return
    scale = max(0.4, min(frame.shape[:2]) / 900)
    thickness = 1 if scale < 0.8 else 2
    sizes = [cv2.getTextSize(line, cv2.FONT_HERSHEY_SIMPLEX, scale, thickness) for line in lines]
    line_height = max(h + base for (_, h), base in sizes) + 4
    width = max(w for (w, _), _ in sizes) + 12
    cv2.rectangle(frame, (4, top), (4 + width, top + line_height * len(lines) + 6), BOX_BGR, -1)
    for i, line in enumerate(lines):
        baseline = top + 4 + line_height * (i + 1) - 4
        cv2.putText(frame, line, (10, baseline), cv2.FONT_HERSHEY_SIMPLEX, scale, TEXT_BGR,
                    thickness, cv2.LINE_AA)  # fmt: skip


def annotate(
    frame: Image,
    *,
    radius: float,
    truth: Position | None = None,
    detected: Position | None = None,
    lines: Sequence[str] = (),
) -> Image:
    """Draw truth (green circle), detection (red cross, sized to the ball) and text, in place."""
    if truth is not None:
        draw_truth(frame, truth, radius)
    if detected is not None:
        draw_detection(frame, detected, max(4.0, radius * 0.6))
    draw_text(frame, lines)
    return frame


class SentFrames:
    """Frame `i` as the server sent it (ball and marker; the faint background grain left
    out), with an overlay. CPU work: the server runs it in a thread."""

    def __init__(self, model: BallModel) -> None:
        self.model = model
        self._canvas = render.new_canvas(model.width, model.height)

    def draw(
        self, frame_index: int, truth: Position, detected: Position | None, lines: Sequence[str]
    ) -> Image:
        """The frame with truth, detection and `lines` drawn (a reused buffer: copy to keep)."""
        model = self.model
        frame = render.draw(truth, model.radius, model.width, model.height,
                            frame_index=frame_index, out=self._canvas)  # fmt: skip
        return annotate(frame, radius=model.radius, truth=truth, detected=detected, lines=lines)


def caption(
    frame: int | None, error_px: float | None, fps: float | None, latency_ms: float | None
) -> list[str]:
    """The two lines of text the views draw: frame and error, fps and latency."""

    def fmt(value: float | None, unit: str, digits: int) -> str:
        return "n/a" if value is None else f"{value:.{digits}f}{unit}"

    return [
        f"frame {'n/a' if frame is None else frame}  error {fmt(error_px, ' px', 3)}",
        f"{fmt(fps, ' fps', 1)}  latency {fmt(latency_ms, ' ms', 1)}",
    ]
