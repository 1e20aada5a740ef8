"""`make bench-peers`: detector throughput and full sessions, as Markdown tables.

Detector: frames rendered, passed through a VP8-like lossy path (JPEG q=50 + noise) and
timed (a) in a spawned process calling what process_a calls per frame (marker + locate) and
(b) through the whole FrameTracker pipeline (queue, pickling, Values, doorbell, event loop).
Sessions: both peers as processes on 127.0.0.1, VP8 at 1000 kbit/s; every session row has
the CPU seconds each process used per second of streaming (server, client, process_a).
Codec and bitrate: VP8 and H264 at 150-1500 kbit/s, 640x480@30 and 1280x720@30.
Packet loss: 640x480@30 across two network namespaces whose nftables rules drop a random
share of the UDP packets (bench/lossy.py; needs root, else the table says why not).
Failure detection: a peer (or process_a) is killed or frozen mid-session; the table shows how
long the other side takes to end the session, with which exit code and message.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import os
import sys
import time
from typing import Any

import cv2
import numpy as np

from bench import lossy
from bench.machine import describe
from bench.progress import say
from bench.sessions import FAILURES, detect_failure, run_session
from localcluster import packages
from peers.ball import BallModel
from peers.render import draw
from peers.tracker import START_METHOD, FrameItem, FrameTracker, process_frame

SIZES = [(640, 480), (1280, 720)]


def _frames(width: int, height: int, count: int = 64) -> list[FrameItem]:
    model = BallModel(width, height, 20, 400, 30, seed=3)
    rng = np.random.default_rng(0)
    items = []
    for i in range(count):
        bgr = draw(model.position(i), 20, width, height, frame_index=i)
        _, jpeg = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, 50])
        luma = np.asarray(cv2.imdecode(jpeg, cv2.IMREAD_GRAYSCALE), dtype=np.float32)
        luma = np.clip(16 + luma * 219 / 255 + rng.normal(0, 1.5, luma.shape), 0, 255)
        items.append(FrameItem(i, width, height, width, luma.astype(np.uint8).tobytes()))
    return items


def _detector_loop(width: int, height: int, seconds: float, out: Any) -> None:
    items = _frames(width, height)
    done = 0
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        process_frame(items[done % len(items)])
        done += 1
    out.put(done / (time.perf_counter() - start))


def detector_in_process(width: int, height: int, seconds: float) -> float:
    """Frames/s of process_a's per-frame work, measured inside a spawned process."""
    ctx: Any = mp.get_context(START_METHOD)
    out = ctx.Queue()
    proc = ctx.Process(target=_detector_loop, args=(width, height, seconds, out))
    proc.start()
    rate = float(out.get(timeout=seconds + 60))
    proc.join()
    return rate


async def _pipeline(width: int, height: int, count: int) -> tuple[float, int]:
    items = _frames(width, height)
    tracker = FrameTracker(queue_size=8)
    tracker.start()
    delivered = 0

    def on_result(_: object) -> None:
        nonlocal delivered
        delivered += 1

    tracker.attach(asyncio.get_running_loop(), on_result)
    await tracker.wait_ready(60)
    start = time.perf_counter()
    for i in range(count):
        tracker.submit(items[i % len(items)])
        if i % 4 == 3:
            await asyncio.sleep(0)
    await tracker.drain(60)
    elapsed = time.perf_counter() - start
    dropped = tracker.dropped
    await asyncio.to_thread(tracker.close)
    return (count - dropped) / elapsed, dropped


def detector_table(seconds: float) -> str:
    """Markdown: detector frames/s per size, alone and through the whole pipeline."""
    rows = [
        "| frame | process_a detector (frames/s) | queue→process_a→Values→loop (frames/s) |",
        "|---|---:|---:|",
    ]
    for width, height in SIZES:
        say(f"detector {width}x{height}: process_a's work alone, {seconds:g} s")
        alone = detector_in_process(width, height, seconds)
        say(f"detector {width}x{height}: queue -> process_a -> loop, 2000 frames")
        pipeline, _ = asyncio.run(_pipeline(width, height, 2000))
        rows.append(f"| {width}x{height} | {alone:,.0f} | {pipeline:,.0f} |")
    return "\n".join(rows)


def _fmt(value: Any, digits: int = 2) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


CPU_HEADER = "CPU server / client / process_a = total (cores)"


def _cpu(s: dict[str, Any]) -> str:
    """CPU seconds per second of streaming of each process, and their sum."""
    cpu = s.get("cpu")
    if not cpu:
        return "n/a"
    total = cpu["server"] + cpu["client"] + cpu["process_a"]
    return f"{cpu['server']:.2f} / {cpu['client']:.2f} / {cpu['process_a']:.2f} = {total:.2f}"


def _matched(s: dict[str, Any]) -> str:
    sent = s["frames_sent"]
    return f"{100.0 * s['frames_matched'] / sent:.2f}%" if sent else "n/a"


def _session_args(width: int, height: int, fps: int, seconds: float, *extra: str) -> list[str]:
    return [
        "--width",
        str(width),
        "--height",
        str(height),
        "--fps",
        str(fps),
        "--duration",
        f"{seconds:g}",
        *extra,
    ]


def session_table(configs: list[tuple[int, int, int, int]]) -> str:
    """Markdown: one row per full session (width, height, fps, seconds), VP8 at 1000 kbit/s."""
    rows = [
        "| session | frames sent | achieved fps | matched | client drops "
        "| error mean / p95 / max (px) | latency p50 / p95 (ms) "
        f"| bitrate measured (kbit/s) | {CPU_HEADER} | RSS server / client (MB) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for number, (width, height, fps, seconds) in enumerate(configs, 1):
        label = f"session {number}/{len(configs)} {width}x{height}@{fps}"
        say(f"{label}: {seconds} s over loopback")
        s = run_session(
            _session_args(width, height, fps, seconds), timeout=seconds + 120, label=label
        )
        rows.append(
            f"| {width}x{height}@{fps}, {seconds} s | {s['frames_sent']} "
            f"| {_fmt(s['achieved_fps'])} ({100.0 * (s['achieved_fps'] or 0) / fps:.1f}%) "
            f"| {_matched(s)} | {s['frames_dropped_by_client']} "
            f"| {_fmt(s['mean_error_px'], 3)} / {_fmt(s['p95_error_px'], 3)} / "
            f"{_fmt(s['max_error_px'], 3)} "
            f"| {_fmt(s['latency_ms_p50'], 1)} / {_fmt(s['latency_ms_p95'], 1)} "
            f"| {_fmt(s['measured_bitrate_kbps'], 0)} | {_cpu(s)} "
            f"| {s['server_rss_mb']} / {s['client_rss_mb']} |"
        )
    return "\n".join(rows)


CODECS = ("VP8", "H264")
BITRATES_KBPS = (150, 300, 600, 1500)
CODEC_SIZES = ((640, 480, 30), (1280, 720, 30))


def codec_table(
    sizes: tuple[tuple[int, int, int], ...], bitrates: tuple[int, ...], seconds: float
) -> str:
    """Markdown: error and matched frames per codec and target bitrate, with the bitrate
    measured on the wire and each peer's CPU."""
    rows = [
        "| frame | codec | target (kbit/s) | measured (kbit/s) | matched "
        "| error mean / p95 (px) | unreadable | latency p50 / p95 (ms) "
        f"| {CPU_HEADER} |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    combos = [(size, codec, kbps) for size in sizes for codec in CODECS for kbps in bitrates]
    for number, ((width, height, fps), codec, kbps) in enumerate(combos, 1):
        label = f"codec {number}/{len(combos)} {width}x{height}@{fps} {codec} {kbps} kbit/s"
        say(f"{label}: {seconds:g} s over loopback")
        args = _session_args(width, height, fps, seconds, "--codec", codec)
        s = run_session([*args, "--bitrate-kbps", str(kbps)], timeout=seconds + 120, label=label)
        rows.append(
            f"| {width}x{height}@{fps} | {codec} | {kbps} | {_fmt(s['measured_bitrate_kbps'], 0)} "
            f"| {_matched(s)} | {_fmt(s['mean_error_px'], 3)} / {_fmt(s['p95_error_px'], 3)} "
            f"| {s['frames_unreadable']} "
            f"| {_fmt(s['latency_ms_p50'], 1)} / {_fmt(s['latency_ms_p95'], 1)} | {_cpu(s)} |"
        )
    return "\n".join(rows)


LOSSES = ((0.0, 0.0), (2.0, 0.0), (5.0, 0.0), (5.0, 5.0))
"""(server -> client %, client -> server %) of UDP packets dropped."""


def loss_table(seconds: float) -> str:
    """Markdown: sessions across a lossy link (two network namespaces, nftables drops)."""
    problem = lossy.unavailable()
    if problem is None and os.geteuid() == 0:
        problem = packages.ensure(["ip", "nft"], say)
    if problem is not None:
        return f"(not run: {problem})"
    rows = [
        "| UDP loss to client / to server | link dropped (packets) | loss reported (RTCP) "
        "| matched | incomplete | client drops | error mean / p95 (px) | latency p50 / p95 (ms) "
        f"| {CPU_HEADER} |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for number, (to_client, to_server) in enumerate(LOSSES, 1):
        label = f"loss {number}/{len(LOSSES)} {to_client:g}% / {to_server:g}%"
        say(f"{label}: {seconds:g} s at 640x480@30 across two network namespaces")
        with lossy.LossyLink(to_client, to_server) as link:
            s = run_session(
                _session_args(640, 480, 30, seconds), timeout=seconds + 120, label=label, link=link
            )
            dropped = link.dropped()
        rows.append(
            f"| {to_client:g}% / {to_server:g}% | {dropped[0]} / {dropped[1]} "
            f"| {_fmt(s['packet_loss_pct'], 2)}% | {_matched(s)} | {s['frames_incomplete']} "
            f"| {s['frames_dropped_by_client']} "
            f"| {_fmt(s['mean_error_px'], 3)} / {_fmt(s['p95_error_px'], 3)} "
            f"| {_fmt(s['latency_ms_p50'], 1)} / {_fmt(s['latency_ms_p95'], 1)} | {_cpu(s)} |"
        )
    return "\n".join(rows)


def failure_table() -> str:
    """Markdown: how fast the surviving peer notices each failure, and how it exits."""
    rows = [
        "| failure (after 5 s of streaming) | noticed by | after (s) | exit | message |",
        "|---|---|---:|---:|---|",
    ]
    for number, failure in enumerate(FAILURES, 1):
        say(f"failure {number}/{len(FAILURES)}: {failure} after 5 s of streaming")
        r = detect_failure(failure)
        rows.append(
            f"| {failure} | {r['peer']} | {r['seconds']:.1f} | {r['code']} | {r['message']} |"
        )
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    """Print the detector, session, codec/bitrate, loss and failure tables."""
    parser = argparse.ArgumentParser(prog="python -m bench.peers")
    parser.add_argument("--quick", action="store_true", help="short runs (smoke test)")
    args = parser.parse_args(argv)
    seconds = 2.0 if args.quick else 5.0
    configs = (
        [(640, 480, 30, 5), (1280, 720, 60, 5)]
        if args.quick
        else [(640, 480, 30, 30), (1280, 720, 60, 30)]
    )
    codec_seconds, loss_seconds = (4.0, 6.0) if args.quick else (10.0, 20.0)
    sizes = CODEC_SIZES[:1] if args.quick else CODEC_SIZES
    bitrates = BITRATES_KBPS[1::2] if args.quick else BITRATES_KBPS
    say(
        "bench-peers: about "
        + (
            "3 minutes (--quick)"
            if args.quick
            else "12 minutes: 2 long sessions, "
            f"{len(sizes) * len(CODECS) * len(bitrates)} codec/bitrate sessions, "
            f"{len(LOSSES)} lossy ones, 5 failures"
        )
    )
    print(f"Machine: {describe()}\n")
    print("### Detector throughput\n")
    print(detector_table(seconds), "\n", flush=True)
    print("### Full sessions (loopback, VP8 at 1000 kbit/s)\n")
    print(session_table(configs), "\n", flush=True)
    print(f"### Codec and bitrate (loopback, {codec_seconds:g} s each)\n")
    print(codec_table(sizes, bitrates, codec_seconds), "\n", flush=True)
    print(f"### Packet loss (640x480@30, VP8 at 1000 kbit/s, {loss_seconds:g} s each)\n")
    print(loss_table(loss_seconds), "\n", flush=True)
    print("### Failure detection (loopback)\n")
    print(failure_table(), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
