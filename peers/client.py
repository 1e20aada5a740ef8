"""The client peer (answerer): receives the ball, finds it in process_a, sends coordinates.

python -m peers.client answer --verbose
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import sys
import time
from collections import deque
from typing import Any

import cv2
from aiortc import MediaStreamTrack, RTCDataChannel, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError

from peers import cli, protocol, signaling
from peers.session import INTERRUPTED, TIMED_OUT, connect_within, fail, first_of
from peers.signaling.base import SignalingError
from peers.tracker import Detection, FrameItem, FrameTracker

log = logging.getLogger("rebound.client")

PROG = "python -m peers.client"
STATS_INTERVAL_S = 1.0
END_SETTLE_S = 0.5
"""After the server's end notice: how long without new frames means none are in flight."""
END_CAP_S = 3.0
PENDING_LIMIT = 1024
"""Coordinates buffered while the data channel is not open yet."""


def build_parser() -> argparse.ArgumentParser:
    """The client's command line."""
    parser = cli.new_parser(
        PROG,
        "Rebound client peer: receives the bouncing ball over WebRTC, locates it "
        "in a separate process and sends each coordinate back.",
        "answer",
    )
    parser.add_argument(
        "--display",
        action="store_true",
        help="show received frames (needs an OpenCV build with a GUI)",
    )
    parser.add_argument(
        "--queue-size",
        type=int,
        default=4,
        metavar="N",
        help="frames queued for process_a before the oldest is dropped",
    )
    cli.add_common_arguments(parser)
    signaling.add_arguments(parser)
    return parser


def validate_args(args: argparse.Namespace) -> None:
    """Check every flag before any network activity."""
    cli.validate_common_arguments(args)
    if not 1 <= args.queue_size <= 1024:
        raise cli.UsageError(f"--queue-size {args.queue_size} must be between 1 and 1024")


def gui_available() -> bool:
    """True when this OpenCV build can open windows (opencv-python-headless cannot)."""
    for line in cv2.getBuildInformation().splitlines():
        if line.strip().startswith("GUI:"):
            return line.split(":", 1)[1].strip().upper() != "NONE"
    return False


def frame_item(frame: Any, seq: int) -> FrameItem:
    """The luma plane of a decoded yuv420p frame, ready for the queue."""
    if frame.format.name != "yuv420p":
        frame = frame.reformat(format="yuv420p")
    plane = frame.planes[0]
    return FrameItem(seq, frame.width, frame.height, plane.line_size, bytes(plane))


class Client:
    """One client session: peer connection, process_a, and the coordinate sender."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.tracker = FrameTracker(args.queue_size)
        self.signaling = signaling.create("answer", args)
        self.pc = RTCPeerConnection(cli.rtc_configuration(cli.parse_ice_servers(args.ice_servers)))
        self.pc.on("track", self._on_track)
        self.pc.on("datachannel", self._on_datachannel)
        self.pc.on("connectionstatechange", self._on_state)
        self.channel: RTCDataChannel | None = None
        self.connected = asyncio.Event()
        self.lost = asyncio.Event()
        self.ended = asyncio.Event()
        self.end_frames = 0
        self.received = 0
        self.max_frame_seen = -1
        self.last_frame_at = 0.0
        self.sent = 0
        self._pending: deque[str] = deque(maxlen=PENDING_LIMIT)
        self._consumer: asyncio.Task[None] | None = None
        self._display = bool(args.display) and gui_available()
        if args.display and not self._display:
            log.info("--display: this OpenCV build has no GUI (headless); running headless")

    def _on_state(self) -> None:
        state = self.pc.connectionState
        log.debug("connection state: %s", state)
        if state == "connected":
            self.connected.set()
        elif state in ("failed", "closed"):
            self.lost.set()

    def _on_track(self, track: MediaStreamTrack) -> None:
        if track.kind == "video" and self._consumer is None:
            self._consumer = asyncio.ensure_future(self._consume(track))

    def _on_datachannel(self, channel: RTCDataChannel) -> None:
        self.channel = channel
        channel.on("message", self._on_message)
        channel.on("open", self._flush)
        if channel.readyState == "open":
            self._flush()

    def _on_message(self, message: object) -> None:
        try:
            decoded = protocol.decode(message)
        except protocol.ProtocolError as exc:
            log.debug("ignored a server message: %s", exc)
            return
        if isinstance(decoded, protocol.End):
            self.end_frames = decoded.frames
            self.ended.set()

    def _send(self, text: str) -> None:
        channel = self.channel
        if channel is not None and channel.readyState == "open":
            channel.send(text)
        else:
            self._pending.append(text)

    def _flush(self) -> None:
        while self._pending and self.channel is not None and self.channel.readyState == "open":
            self.channel.send(self._pending.popleft())

    def _on_detection(self, detection: Detection) -> None:
        self.max_frame_seen = max(self.max_frame_seen, detection.frame)
        self._send(protocol.encode_coordinate(detection.frame, detection.x, detection.y))
        self.sent += 1
        if self.args.verbose:
            print(
                f"frame {detection.frame:6d}  ball at ({detection.x:8.3f}, {detection.y:8.3f})",
                flush=True,
            )

    async def _consume(self, track: MediaStreamTrack) -> None:
        seq = 0
        with contextlib.suppress(MediaStreamError):
            while True:
                frame: Any = await track.recv()
                self.received += 1
                self.last_frame_at = time.monotonic()
                self.tracker.submit(frame_item(frame, seq))
                seq += 1
                if self._display:
                    cv2.imshow("rebound client", frame.to_ndarray(format="bgr24"))
                    cv2.waitKey(1)

    def stats(self, final: bool) -> protocol.ClientStats:
        """The client's counters as sent to the server."""
        shared = self.tracker.shared
        return protocol.ClientStats(
            received=self.received,
            dropped=self.tracker.dropped,
            unreadable=int(shared.unreadable.value),
            missed=int(shared.missed.value),
            final=final,
        )

    async def _signal(self) -> None:
        if not await self.tracker.wait_ready(self.args.connect_timeout):
            raise SignalingError("process_a did not start")
        await self.signaling.connect()
        log.info("waiting for the server's offer (signaling: %s)", self.args.signaling)
        while True:
            message = await self.signaling.receive()
            if isinstance(message, RTCSessionDescription) and message.type == "offer":
                break
            if message is None or message is signaling.BYE:
                raise SignalingError("the server hung up during signaling")
        await self.pc.setRemoteDescription(message)
        await self.pc.setLocalDescription(await self.pc.createAnswer())
        await self.signaling.send(self.pc.localDescription)
        await self.connected.wait()
        log.info("connected; tracking the ball in process_a (pid %s)", self.tracker.pid)

    async def _settle_after_end(self) -> None:
        """Let in-flight frames arrive and process_a finish before the final counters."""
        deadline = time.monotonic() + END_CAP_S
        while time.monotonic() < deadline:
            caught_up = self.max_frame_seen >= self.end_frames - 1
            quiet = time.monotonic() - self.last_frame_at >= END_SETTLE_S
            if (caught_up or quiet) and self.tracker.idle():
                return
            await asyncio.sleep(0.02)

    async def _session(self, stop: asyncio.Event) -> int:
        events = (stop, self.lost, self.ended)
        last_stats = time.monotonic()
        while not any(event.is_set() for event in events):
            await first_of(*events, timeout=STATS_INTERVAL_S)
            if time.monotonic() - last_stats >= STATS_INTERVAL_S:
                last_stats = time.monotonic()
                self._send(protocol.encode_stats(self.stats(final=False)))
        if self.ended.is_set():
            await self._settle_after_end()
            self._send(protocol.encode_stats(self.stats(final=True)))
            await self._wait_flushed()
            self._print_summary()
            return cli.EXIT_OK
        if stop.is_set():
            # Leaving on purpose: tell the server so it ends the session instead of failing.
            self._send(protocol.encode_stats(self.stats(final=True)))
            await self._wait_flushed()
            self._print_summary()
            return cli.EXIT_OK
        self._print_summary()
        print(
            "python -m peers.client: error: the server disconnected before the session ended",
            file=sys.stderr,
        )
        return cli.EXIT_FAILED

    async def _wait_flushed(self) -> None:
        channel = self.channel
        deadline = time.monotonic() + 2.0
        while (
            channel is not None
            and channel.readyState == "open"
            and channel.bufferedAmount > 0
            and time.monotonic() < deadline
        ):
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.1)  # let SCTP hand the last chunk to the transport

    def _print_summary(self) -> None:
        s = self.stats(final=True)
        print(
            f"\n== Rebound client ==\nframes received {s.received}  coordinates sent {self.sent}"
            f"  dropped {s.dropped}  unreadable {s.unreadable}  no ball {s.missed}",
            flush=True,
        )

    async def run(self, stop: asyncio.Event) -> int:
        """Start process_a, signal, track until the server ends. Returns the exit code."""
        try:
            self.tracker.start()
            self.tracker.attach(asyncio.get_running_loop(), self._on_detection)
            try:
                outcome = await connect_within(self._signal(), stop, self.args.connect_timeout)
            except SignalingError as exc:
                return await self._fail(str(exc), cli.EXIT_FAILED)
            if outcome == INTERRUPTED:
                return cli.EXIT_INTERRUPTED
            if outcome == TIMED_OUT:
                return await self._fail(
                    f"no server offer/connection within {self.args.connect_timeout:g} s",
                    cli.EXIT_TIMEOUT,
                )
            return await self._session(stop)
        finally:
            await self.close()

    async def _fail(self, message: str, code: int) -> int:
        return await fail(PROG, self.signaling, message, code)

    async def close(self) -> None:
        """Stop the consumer, process_a, the peer connection and signaling."""
        if self._consumer is not None:
            self._consumer.cancel()
            with contextlib.suppress(asyncio.CancelledError, MediaStreamError):
                await self._consumer
        await self.pc.close()
        await asyncio.to_thread(self.tracker.close)
        await self.signaling.close()
        if self._display:
            cv2.destroyAllWindows()


async def answer(args: argparse.Namespace, stop: asyncio.Event) -> int:
    """Validate the flags, then run one client session."""
    validate_args(args)
    cli.configure_logging(args.verbose)
    return await Client(args).run(stop)


def main(argv: list[str] | None = None) -> int:
    """Console entry point: `python -m peers.client`."""
    args = build_parser().parse_args(argv)
    return cli.run(lambda stop: answer(args, stop), "python -m peers.client")


if __name__ == "__main__":
    sys.exit(main())
