import cv2
import numpy as np
import pytest

from peers import detect, marker, render
from peers.ball import Position
from peers.config import MARKER_BAND_PX


def luma(position: Position, radius: float = 20, w: int = 640, h: int = 480) -> np.ndarray:
    return cv2.cvtColor(render.draw(position, radius, w, h), cv2.COLOR_BGR2GRAY)


def centroid(img: np.ndarray) -> tuple[float, float]:
    m = cv2.moments(img)
    return m["m10"] / m["m00"], m["m01"] / m["m00"]


def test_draw_returns_bgr_of_requested_size() -> None:
    frame = render.draw(Position(50.5, 60.25), 10, 333, 222)
    assert frame.shape == (222, 333, 3)
    assert frame.dtype == np.uint8


@pytest.mark.parametrize("dx", [0.0, 0.125, 0.25, 0.5, 0.75])
def test_subpixel_placement_moves_the_centroid(dx: float) -> None:
    base = Position(300.0, 200.0)
    cx, cy = centroid(luma(Position(base.x + dx, base.y + dx / 2)))
    assert cx == pytest.approx(base.x + dx, abs=0.04)
    assert cy == pytest.approx(base.y + dx / 2, abs=0.04)


def test_antialiased_edges_have_intermediate_values() -> None:
    img = luma(Position(100.3, 100.7))
    values = set(np.unique(img).tolist())
    assert len(values - {0, 255}) > 10


def test_draw_reuses_the_output_buffer() -> None:
    out = render.new_canvas(200, 100)
    frame = render.draw(Position(50, 50), 10, 200, 100, out=out)
    assert frame is out
    render.draw(Position(150, 50), 10, 200, 100, out=out)
    assert out[50, 50].max() == 0  # the old ball is gone


def test_marker_band_is_written_only_when_asked_and_never_reaches_the_arena() -> None:
    plain = render.draw(Position(100, 60), 10, 256, 128)
    assert plain[:MARKER_BAND_PX].max() == 0
    stamped = render.draw(Position(100, 60), 10, 256, 128, frame_index=0xABCDE)
    assert stamped[: marker.MARKER_ROWS].max() == 255
    assert stamped[marker.MARKER_ROWS : MARKER_BAND_PX].max() == 0
    assert np.array_equal(stamped[MARKER_BAND_PX:], plain[MARKER_BAND_PX:])


# ---- marker ------------------------------------------------------------------------


@pytest.mark.parametrize("index", [0, 1, 2, 12345, marker.MAX_INDEX - 1])
def test_marker_round_trips(index: int) -> None:
    frame = render.draw(Position(100, 100), 10, 320, 240, frame_index=index)
    assert marker.read(cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)) == index


def test_marker_checksum_rejects_a_flipped_bit() -> None:
    word = marker.encode(4242)
    for bit in range(marker.BITS):
        assert marker.decode(word ^ (1 << bit)) != 4242


def test_marker_survives_lossy_compression_and_limited_range() -> None:
    frame = render.draw(Position(100, 100), 10, 320, 240, frame_index=777)
    ok, jpeg = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, 20])
    assert ok
    decoded = cv2.cvtColor(cv2.imdecode(jpeg, cv2.IMREAD_COLOR), cv2.COLOR_BGR2GRAY)
    limited = (16 + decoded.astype(np.float32) * (219 / 255)).astype(np.uint8)
    assert marker.read(decoded) == 777
    assert marker.read(limited) == 777


def test_marker_unreadable_on_blank_or_tiny_frames() -> None:
    assert marker.read(np.zeros((240, 320), np.uint8)) is None
    assert marker.read(np.zeros((10, 320), np.uint8)) is None
    assert marker.read(np.zeros((240, 64), np.uint8)) is None


# ---- detector ----------------------------------------------------------------------


def test_detector_is_subpixel_accurate_on_clean_frames() -> None:
    rng = np.random.default_rng(0)
    errors = []
    for _ in range(50):
        truth = Position(rng.uniform(30, 600), rng.uniform(MARKER_BAND_PX + 30, 440))
        x, y = detect.locate(luma(truth))  # type: ignore[misc]
        errors.append(np.hypot(x - truth.x, y - truth.y))
    assert np.mean(errors) < 0.03
    assert np.max(errors) < 0.08


def codec_like(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Blur, 4:2:0-like softening, JPEG blocking, limited range and sensor-like noise."""
    img = cv2.GaussianBlur(img, (5, 5), 1.0)
    ok, jpeg = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 50])
    assert ok
    img = cv2.imdecode(jpeg, cv2.IMREAD_GRAYSCALE).astype(np.float32)
    img = 16 + img * (219 / 255) + rng.normal(0, 2.0, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def test_detector_is_accurate_under_noise_and_codec_blur() -> None:
    rng = np.random.default_rng(1)
    errors = []
    for _ in range(50):
        truth = Position(rng.uniform(30, 600), rng.uniform(MARKER_BAND_PX + 30, 440))
        x, y = detect.locate(codec_like(luma(truth), rng))  # type: ignore[misc]
        errors.append(np.hypot(x - truth.x, y - truth.y))
    assert np.mean(errors) < 0.1
    assert np.percentile(errors, 95) < 0.25


def test_detector_accepts_bgr_and_ignores_the_marker_band() -> None:
    truth = Position(200.25, 100.75)
    frame = render.draw(truth, 15, 640, 480, frame_index=marker.MAX_INDEX - 1)
    x, y = detect.locate(frame)  # type: ignore[misc]
    assert np.hypot(x - truth.x, y - truth.y) < 0.05


def test_detector_handles_a_ball_touching_the_walls() -> None:
    for truth in (Position(12.0, MARKER_BAND_PX + 12.0), Position(627.0, 467.0)):
        x, y = detect.locate(luma(truth, radius=12))  # type: ignore[misc]
        assert np.hypot(x - truth.x, y - truth.y) < 0.05


def test_detector_returns_none_without_a_ball() -> None:
    assert detect.locate(np.zeros((480, 640), np.uint8)) is None
    assert detect.locate(np.full((480, 640), 128, np.uint8)) is None
    assert detect.locate(np.zeros((10, 640), np.uint8)) is None
    noise = np.random.default_rng(2).normal(16, 2, (480, 640)).clip(0, 255).astype(np.uint8)
    assert detect.locate(noise) is None


def test_grain_is_faint_deterministic_and_new_every_frame() -> None:
    grain = render.Grain(320, 240)
    first = grain.pattern(5, MARKER_BAND_PX)
    assert first.shape == (240 - MARKER_BAND_PX, 320)
    assert int(first.max()) == render.GRAIN_LEVELS and int(first.min()) == 0
    assert np.array_equal(first, render.Grain(320, 240).pattern(5, MARKER_BAND_PX))
    following = grain.pattern(6, MARKER_BAND_PX).astype(np.int16)
    assert np.corrcoef(first.ravel(), following.ravel())[0, 1] < 0.05


@pytest.mark.parametrize("index", range(8))
def test_the_detector_and_marker_ignore_the_grain(index: int) -> None:
    position = Position(123.4 + 17 * index, 201.7 + 9 * index)
    bgr = render.draw(position, 20, 640, 480, frame_index=index)
    # limited-range luma as the encoder gets it, with the grain the server adds
    limited = (16 + cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY).astype(np.float32) * 219 / 255).round()
    luma_frame = limited.astype(np.uint8)
    render.Grain(640, 480).add_to(luma_frame, index, MARKER_BAND_PX)
    assert marker.read(luma_frame) == index
    found = detect.locate(luma_frame)
    assert found is not None
    assert found == pytest.approx((position.x, position.y), abs=0.05)
