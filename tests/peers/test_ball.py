import math

import pytest

from peers.ball import BallModel, Position, fold


def test_fold_reflects_off_both_ends() -> None:
    assert fold(5.0, 0.0, 10.0) == 5.0
    assert fold(12.0, 0.0, 10.0) == pytest.approx(8.0)
    assert fold(-3.0, 0.0, 10.0) == pytest.approx(3.0)
    assert fold(25.0, 0.0, 10.0) == pytest.approx(5.0)
    assert fold(20.0, 0.0, 10.0) == pytest.approx(0.0)


def test_fold_degenerate_span_pins_to_low() -> None:
    assert fold(123.0, 4.0, 4.0) == 4.0


def model(**kw: object) -> BallModel:
    args: dict[str, object] = dict(width=200, height=116, radius=10, speed=100, fps=10)
    args.update(kw)
    return BallModel(**args)  # type: ignore[arg-type]


def test_bounces_off_right_wall_elastically() -> None:
    m = model(start=Position(180.0, 60.0), angle_degrees=0.0)  # moving right, x_max = 189
    assert m.position(0) == Position(180.0, 60.0)
    # after 0.2 s the free flight would be at 200: 11 px past the wall -> 189 - 11 = 178
    assert m.position(2).x == pytest.approx(178.0)
    assert m.position(2).y == pytest.approx(60.0)


def test_corner_hit_reflects_both_components() -> None:
    m = model(start=Position(185.0, 101.0), angle_degrees=45.0)  # heads into bottom-right
    # x_max = 189, y_max = 105: both walls are hit; later both coordinates decrease
    p = m.position(2)  # 0.2 s -> 14.14 px along each axis
    assert p.x == pytest.approx(189 - (185 + 14.142135 - 189), abs=1e-4)
    assert p.y == pytest.approx(105 - (101 + 14.142135 - 105), abs=1e-4)


def test_stays_in_arena_for_long_runs() -> None:
    m = model(width=640, height=480, radius=20, speed=1234.5, fps=60, seed=7)
    for i in range(0, 200_000, 37):
        p = m.position(i)
        assert m.x_min - 1e-9 <= p.x <= m.x_max + 1e-9
        assert m.y_min - 1e-9 <= p.y <= m.y_max + 1e-9
        assert p.y - m.radius >= m.top  # never enters the marker band


def test_position_is_a_pure_function_of_the_index() -> None:
    m = model(seed=3)
    forward = [m.position(i) for i in range(100)]
    backward = [m.position(i) for i in reversed(range(100))]
    assert forward == list(reversed(backward))


def test_no_drift_after_a_million_frames() -> None:
    # Moving along x only, the motion has period 2 * span / speed; with span 179 px and
    # 358 px/s that is exactly 1 s = 10 frames, so frame 1_000_000 equals frame 0.
    m = model(start=Position(50.0, 60.0), angle_degrees=0.0, speed=358, fps=10)
    assert m.x_max - m.x_min == 179
    p = m.position(1_000_000)
    assert p.x == pytest.approx(50.0, abs=1e-6)
    assert p.y == pytest.approx(60.0, abs=1e-9)


def test_speed_is_respected_between_bounces() -> None:
    m = model(width=1000, height=1000, start=Position(500.0, 500.0), angle_degrees=30.0, fps=100)
    a, b = m.position(0), m.position(1)
    assert math.hypot(b.x - a.x, b.y - a.y) == pytest.approx(1.0)  # 100 px/s / 100 fps


def test_seed_is_deterministic_and_varies() -> None:
    assert model(seed=1).position(5) == model(seed=1).position(5)
    assert model(seed=1).position(5) != model(seed=2).position(5)


@pytest.mark.parametrize(
    ("kw", "message"),
    [({"fps": 0}, "fps"), ({"radius": 60}, "does not fit")],
)
def test_rejects_impossible_models(kw: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        model(**kw)
