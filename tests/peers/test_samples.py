"""Crops of received frames: taken by the client, rebuilt by the server from untrusted chunks."""

from __future__ import annotations

import itertools

import av
import cv2
import numpy as np

from peers import protocol
from peers.ball import BallModel
from peers.render import draw
from peers.samples import CROP_PX, SampleCollector, SampleTaker
from peers.tracker import Detection

MODEL = BallModel(640, 480, 20, 240, 30, seed=5)


def received(index: int) -> av.VideoFrame:
    bgr = draw(MODEL.position(index), 20, 640, 480, frame_index=index)
    return av.VideoFrame.from_ndarray(bgr, format="bgr24").reformat(format="yuv420p")


def detection(index: int) -> Detection:
    p = MODEL.position(index)
    return Detection(index, p.x, p.y)


def chunks_for(taker: SampleTaker, index: int, now: float) -> list[protocol.SampleChunk]:
    taker.on_frame(received(index), now)
    messages = taker.on_detection(detection(index), now)
    return [protocol.decode(m) for m in messages]  # type: ignore[misc]


def test_a_crop_around_the_detection_travels_and_is_rebuilt() -> None:
    taker, collector = SampleTaker(interval_s=2.0), SampleCollector()
    chunks = chunks_for(taker, 3, now=10.0)
    assert chunks and all(c.frame == 3 for c in chunks)
    for chunk in chunks:
        collector.on_chunk(chunk)
    assert collector.rejected == {} and len(collector.samples) == 1
    sample = collector.samples[0]
    crop = cv2.imdecode(np.frombuffer(sample.png, np.uint8), cv2.IMREAD_GRAYSCALE)
    assert crop.shape == (CROP_PX, CROP_PX) and sample.scale == 1.0
    truth = MODEL.position(3)
    cx, cy = truth.x - sample.x0, truth.y - sample.y0
    assert 30 < cx < 50 and 30 < cy < 50  # the ball is in the middle of the crop
    assert crop[round(cy), round(cx)] > 200 and crop[0, 0] < 40
    assert chunks_for(taker, 4, now=11.0) == []  # not due yet
    assert chunks_for(taker, 5, now=12.5) != []


def test_a_frame_whose_detection_never_comes_is_given_up() -> None:
    taker = SampleTaker()
    taker.on_frame(received(1), 0.0)
    for i in range(2, 13):  # the 11th newer frame gives frame 1 up
        taker.on_frame(received(i), 0.0)
    assert taker.on_detection(detection(1), 0.0) == []
    assert chunks_for(taker, 20, 0.0) != []


def good_chunks(frame: int = 3) -> list[protocol.SampleChunk]:
    noise = np.random.default_rng(frame).integers(0, 256, 2000, dtype=np.uint8).tobytes()
    png = b"\x89PNG\r\n\x1a\n" + noise
    messages = protocol.encode_sample(frame, 10, 20, 1.0, png)
    return [protocol.decode(m) for m in messages]  # type: ignore[misc]


def test_chunks_that_do_not_fit_together_are_counted_and_ignored() -> None:
    chunks = good_chunks()
    assert len(chunks) >= 5
    cases = {
        "sample_out_of_order": [chunks[1:], [chunks[0], chunks[2], chunks[1]]],
        "sample_incomplete": [[*chunks[:-1], *chunks]],
        "sample_not_png": [[protocol.SampleChunk(3, 0, 0, 1.0, 0, 1, "QUJD")]],
    }
    for reason, sequences in cases.items():
        for sequence in sequences:
            collector = SampleCollector()
            for chunk in sequence:
                collector.on_chunk(chunk)
            assert collector.rejected[reason] >= 1, (reason, collector.rejected)
            # only the complete crop that follows an incomplete one is kept
            assert len(collector.samples) == (reason == "sample_incomplete")
    mixed = SampleCollector()
    for chunk in [*chunks[:2], *good_chunks(4)]:  # another crop starts in the middle
        mixed.on_chunk(chunk)
    assert [s.frame for s in mixed.samples] == [4]


def test_samples_are_bounded_and_thinned_evenly() -> None:
    collector = SampleCollector(max_samples=8)
    chunks = good_chunks()
    for frame in range(100):
        for chunk in chunks:
            collector.on_chunk(chunk.__class__(frame, *list(chunk.__dict__.values())[1:]))
    frames = [s.frame for s in collector.samples]
    assert 4 <= len(frames) <= 8
    assert frames[0] == 0 and frames[-1] >= 60
    gaps = {b - a for a, b in itertools.pairwise(frames)}
    assert len(gaps) == 1  # evenly spaced
