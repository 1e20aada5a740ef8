"""Bouncing-ball physics: the true position of frame i as a pure function of i.

The ball moves in a straight line at constant speed and reflects elastically off the four
walls of its arena (the frame minus the marker band at the top). Instead of stepping a
simulation (which accumulates rounding drift), each axis is "unfolded": the free-flight
coordinate u = u0 + v*t is folded back into the arena with a triangle wave of period 2L.
Both axes fold independently, so corner hits reflect both components at once.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field

from peers.config import MARKER_BAND_PX


@dataclass(frozen=True)
class Position:
    """A ball centre in pixel coordinates (OpenCV convention: pixel (0, 0) is centred on 0.0)."""

    x: float
    y: float


def fold(u: float, low: float, high: float) -> float:
    """Reflect a free-flight coordinate u into [low, high] as if bouncing off both ends."""
    span = high - low
    if span <= 0:
        return low
    period = 2.0 * span
    phase = math.fmod(u - low, period)
    if phase < 0:
        phase += period
    return low + (phase if phase <= span else period - phase)


@dataclass(frozen=True)
class BallModel:
    """A ball of `radius` px moving at `speed` px/s inside a `width` x `height` frame.

    `seed` picks the start position and direction; `start` / `angle_degrees` override them.
    The arena excludes the top `top` rows (the frame-identity marker band).
    """

    width: int
    height: int
    radius: float
    speed: float
    fps: float
    seed: int = 0
    start: Position | None = None
    angle_degrees: float | None = None
    top: int = MARKER_BAND_PX
    _origin: Position = field(init=False, repr=False)
    _velocity: tuple[float, float] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if self.fps <= 0:
            raise ValueError(f"fps must be > 0, got {self.fps}")
        if 2 * self.radius + 2 > min(self.width, self.height - self.top):
            raise ValueError(
                f"radius {self.radius:g} does not fit a {self.width}x{self.height} frame"
            )
        rng = random.Random(self.seed)
        origin = self.start or Position(
            rng.uniform(self.x_min, self.x_max), rng.uniform(self.y_min, self.y_max)
        )
        angle = self.angle_degrees
        if angle is None:
            # Keep away from the axes so the ball visits the whole arena.
            angle = rng.choice([1, 3, 5, 7]) * 45.0 + rng.uniform(-25.0, 25.0)
        rad = math.radians(angle)
        object.__setattr__(self, "_origin", origin)
        object.__setattr__(
            self, "_velocity", (self.speed * math.cos(rad), self.speed * math.sin(rad))
        )

    @property
    def x_min(self) -> float:
        """Smallest x the centre can take."""
        return self.radius

    @property
    def x_max(self) -> float:
        """Largest x the centre can take (pixel centres run 0 .. width-1)."""
        return self.width - 1 - self.radius

    @property
    def y_min(self) -> float:
        """Smallest y the centre can take (just below the marker band)."""
        return self.top + self.radius

    @property
    def y_max(self) -> float:
        """Largest y the centre can take."""
        return self.height - 1 - self.radius

    def position_at(self, seconds: float) -> Position:
        """True centre after `seconds` of flight."""
        vx, vy = self._velocity
        return Position(
            fold(self._origin.x + vx * seconds, self.x_min, self.x_max),
            fold(self._origin.y + vy * seconds, self.y_min, self.y_max),
        )

    def position(self, frame_index: int) -> Position:
        """True centre of frame `frame_index` (frame i is shown at t = i / fps)."""
        return self.position_at(frame_index / self.fps)
