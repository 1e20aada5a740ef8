"""Recordings: what goes in comes out of the file, in every format, and failures are one line."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest

from peers.recorder import FORMATS, Recorder, RecordError, check_path


def frames(count: int) -> list[np.ndarray]:
    out = []
    for i in range(count):
        frame = np.zeros((240, 320, 3), dtype=np.uint8)
        frame[100:140, 10 + 8 * i : 50 + 8 * i] = (0, 0, 255)  # a red square moving right
        out.append(frame)
    return out


def decoded(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as container:
        return [f.to_ndarray(format="bgr24") for f in container.decode(video=0)]


@pytest.mark.parametrize("suffix", list(FORMATS))
async def test_frames_are_recorded_at_their_times(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"r{suffix}"
    recorder = Recorder(path, fps_hint=30)
    for i, frame in enumerate(frames(30)):
        recorder.write(frame, i / 30)
    recorder.write(frames(1)[0], 0.5)  # not after the last one: skipped
    await recorder.close()
    shown = decoded(path)
    expected = 15 if suffix == ".gif" else 30  # a GIF keeps at most 15 frames/s
    assert abs(len(shown) - expected) <= 1
    last = shown[-1]
    assert last.shape == (240, 320, 3)
    red = (last[:, :, 2] > 150) & (last[:, :, 1] < 100)
    columns = np.nonzero(red.any(axis=0))[0]
    assert columns.min() > 200  # the square moved: the last frame is the last one written
    with av.open(str(path)) as container:
        assert 0.8 < float(container.duration or 0) / 1e6 < 1.2


async def test_an_odd_frame_size_is_cropped_to_even_for_the_encoder(tmp_path: Path) -> None:
    recorder = Recorder(tmp_path / "odd.mp4")
    for i in range(5):
        recorder.write(np.full((241, 321, 3), 200, dtype=np.uint8), i / 30)
    await recorder.close()
    assert decoded(tmp_path / "odd.mp4")[0].shape == (240, 320, 3)


def test_an_unknown_format_is_refused_in_one_line(tmp_path: Path) -> None:
    assert check_path(tmp_path / "x.avi") == f"--record {tmp_path / 'x.avi'}: use one of " + (
        ", ".join(FORMATS)
    )
    with pytest.raises(RecordError):
        Recorder(tmp_path / "x.avi")


async def test_an_unwritable_file_fails_at_the_end(tmp_path: Path) -> None:
    recorder = Recorder(tmp_path / "missing" / "r.mp4")
    recorder.write(frames(1)[0], 0.0)
    with pytest.raises(RecordError, match=r"--record .*r\.mp4"):
        await recorder.close()


async def test_nothing_shown_leaves_no_file(tmp_path: Path) -> None:
    recorder = Recorder(tmp_path / "empty.mp4")
    await recorder.close()
    assert not (tmp_path / "empty.mp4").exists()
