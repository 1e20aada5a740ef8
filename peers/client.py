"""The client peer (answerer): receives the ball, finds it in process_a, sends coordinates.

python -m peers.client answer --verbose
"""

from __future__ import annotations

from peers import startup  # noqa: F401  (first: a Ctrl-C while aiortc loads exits quietly)

# isort: split
import argparse
import asyncio
import contextlib
import logging
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from aiortc import MediaStreamTrack, RTCDataChannel, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError

from peers import cli, display, marker, protocol, recorder, sctp_guard, signaling
from peers.channel import LABEL, PeerChannel
from peers.liveness import Stall
from peers.progress import Progress
from peers.receive import FastVideoReceive
from peers.received import ReceivedFrames
from peers.samples import SampleTaker
from peers.session import (
    NoPeer,
    PeerFailure,
    channel_opens,
    exception_proof,
    first_of,
    link_failure,
    new_peer_connection,
    one_line,
    prepare,
    run_peer,
    watch,
    within,
)
from peers.signaling.base import SignalingError
from peers.tracker import Detection, FrameItem, FrameTracker

log = logging.getLogger("rebound.client")

PROG = "python -m peers.client"
STATS_INTERVAL_S = 1.0
END_SETTLE_S = 0.5
"""After the server's end notice: how long without new frames means none are in flight."""
END_CAP_S = 3.0
DRAIN_TIMEOUT_S = 2.0
"""How long process_a may take to finish the frames queued when the session ends."""
FLUSH_TIMEOUT_S = 2.0
PROCESS_A_START_TIMEOUT_S = 60.0
MAX_QUEUE_SIZE = 1024


def build_parser() -> argparse.ArgumentParser:
    """The client's command line (--help shows every default and bound)."""
    parser = cli.new_parser(
        PROG,
        "Rebound client peer: receives the bouncing ball over WebRTC, locates it "
        "in a separate process and sends each coordinate back. Exit codes: 0 session "
        "completed, 1 runtime failure, 2 bad usage, 3 no server within --connect-timeout, "
        "130 interrupted before connecting.",
        "answer",
    )
    parser.add_argument(
        "--display",
        action="store_true",
        help="show the received frames with the detection in a window (needs OpenCV's GUI "
        "build: make install-gui)",
    )
    parser.add_argument(
        "--record",
        type=Path,
        metavar="PATH",
        help="record the received frames with the detection drawn to PATH "
        f"({', '.join(recorder.FORMATS)})",
    )
    parser.add_argument(
        "--queue-size",
        type=int,
        default=4,
        metavar="N",
        help="frames queued for process_a before the oldest is dropped, "
        f"{cli.describe_range(1, MAX_QUEUE_SIZE)}",
    )
    cli.add_common_arguments(parser)
    signaling.add_arguments(parser)
    return parser


def validate_args(args: argparse.Namespace) -> None:
    """Check every flag before any network activity."""
    cli.validate_common_arguments(args)
    if not 1 <= args.queue_size <= MAX_QUEUE_SIZE:
        raise cli.UsageError(
            f"--queue-size {args.queue_size} must be {cli.describe_range(1, MAX_QUEUE_SIZE)}"
        )
    if args.record is not None:
        cli.check_output_path("--record", args.record)
        if problem := recorder.check_path(args.record):
            raise cli.UsageError(problem)


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
        self.pc = new_peer_connection(cli.parse_ice_servers(args.ice_servers))
        self.handler_errors: Counter[str] = Counter()
        errors = self.handler_errors
        self.pc.on("track", exception_proof(self._on_track, errors, "track"))
        self.pc.on("datachannel", exception_proof(self._on_datachannel, errors, "datachannel"))
        self.pc.on("connectionstatechange", exception_proof(self._on_state, errors, "state"))
        self.channel = PeerChannel(self._on_message, errors)
        self.connected = asyncio.Event()
        self.lost = asyncio.Event()
        self.ended = asyncio.Event()
        self.server_bye = asyncio.Event()
        self.server_abort = asyncio.Event()
        self.process_a_died = asyncio.Event()
        self.abort_reason = ""
        self.process_a_exit = ""
        self.ignored: Counter[str] = Counter()
        self.end_frames = 0
        self.received = 0
        self.max_frame_seen = -1
        self.last_frame_at = 0.0
        self.sent = 0
        self.accepting = True
        self.final_sent = False
        self.stall = Stall()
        self._last_stats = 0.0
        self.progress = Progress()
        self._consumer: asyncio.Task[None] | None = None
        self.receive_path: FastVideoReceive | None = None
        self.window = display.Window.for_program("peers.client") if args.display else None
        if args.display and self.window is None:
            log.info("--display: %s; running without a window", display.unavailable_reason())
        self.recorder = None if args.record is None else recorder.Recorder(args.record)
        self.sampler = SampleTaker()
        self.pictures = (
            ReceivedFrames(self.window, self.recorder)
            if self.window is not None or self.recorder is not None
            else None
        )

    def _on_state(self) -> None:
        state = self.pc.connectionState
        log.debug("connection state: %s", state)
        if state == "connected":
            self.connected.set()
        elif state in ("failed", "closed"):
            self.lost.set()

    def _on_track(self, track: MediaStreamTrack) -> None:
        if track.kind == "video" and self._consumer is None:
            receiver = next(r for r in self.pc.getReceivers() if r.track is track)
            self.receive_path = FastVideoReceive.install(receiver)
            self._consumer = asyncio.ensure_future(self._consume(track))

    def _on_datachannel(self, channel: RTCDataChannel) -> None:
        if channel.label != LABEL or not self.channel.attach(channel):
            self.ignored["extra_channel"] += 1

    def _on_message(self, message: object) -> None:
        try:
            decoded = protocol.decode(message)
        except protocol.ProtocolError as exc:
            self.ignored[exc.reason] += 1
            return
        if isinstance(decoded, protocol.End):
            if not self.ended.is_set():
                self.end_frames = decoded.frames
                self.ended.set()
        elif isinstance(decoded, protocol.Bye):
            self.server_bye.set()
        elif isinstance(decoded, protocol.Abort):
            self.abort_reason = decoded.why
            self.server_abort.set()
        elif not isinstance(decoded, protocol.Heartbeat):
            self.ignored["unexpected_kind"] += 1

    def _on_process_a_exit(self, description: str) -> None:
        self.process_a_exit = description
        self.process_a_died.set()

    def _on_detection(self, detection: Detection) -> None:
        if self.final_sent:  # nothing follows the final counters (drained before them)
            self.ignored["late_detection"] += 1
            return
        self.max_frame_seen = max(self.max_frame_seen, detection.frame)
        self.channel.send(protocol.encode_coordinate(detection.frame, detection.x, detection.y))
        self.sent += 1
        if self.pictures is not None:
            self.pictures.on_detection(detection)
        for message in self.sampler.on_detection(detection, time.monotonic()):
            self.channel.send(message)
        if self.args.verbose:
            print(
                f"frame {detection.frame:6d}  ball at ({detection.x:8.3f}, {detection.y:8.3f})",
                flush=True,
            )

    def _on_miss(self, frame: int, outcome: str) -> None:
        """process_a saw frame `frame` but found no ball in it, or named an unreadable frame."""
        if not self.final_sent:
            self.channel.send(protocol.encode_outcome(frame, outcome))

    def _on_drop(self, item: FrameItem) -> None:
        """A queued frame was dropped (process_a behind): tell the server which one."""
        frame = marker.read(item.luma())
        if frame is not None and frame != marker.FLUSH_INDEX and not self.final_sent:
            self.channel.send(protocol.encode_outcome(frame, "dropped"))

    async def _consume(self, track: MediaStreamTrack) -> None:
        seq = 0
        with contextlib.suppress(MediaStreamError):
            while True:
                frame: Any = await track.recv()  # always drained: aiortc's queue is unbounded
                if not self.accepting:
                    continue
                self.received += 1
                self.last_frame_at = time.monotonic()
                self.tracker.submit(frame_item(frame, seq))
                seq += 1
                self.sampler.on_frame(frame, self.last_frame_at)
                if self.pictures is not None:
                    self.pictures.on_frame(frame, self.last_frame_at)

    def incomplete(self) -> int:
        """Frames the receiver gave up on (never decoded)."""
        return 0 if self.receive_path is None else self.receive_path.incomplete

    def stats(self, final: bool) -> protocol.ClientStats:
        """The client's counters as sent to the server."""
        shared = self.tracker.shared
        return protocol.ClientStats(
            received=self.received,
            dropped=self.tracker.dropped,
            unreadable=int(shared.unreadable.value),
            missed=int(shared.missed.value),
            incomplete=self.incomplete(),
            final=final,
        )

    async def _start_process_a(self, stop: asyncio.Event) -> None:
        self.tracker.start()
        self.tracker.attach(
            asyncio.get_running_loop(),
            self._on_detection,
            self._on_process_a_exit,
            on_miss=self._on_miss,
            on_drop=self._on_drop,
        )
        ready = asyncio.ensure_future(self.tracker.wait_ready(PROCESS_A_START_TIMEOUT_S))
        await within(ready, stop)
        if not ready.result():
            raise PeerFailure(
                f"process_a did not start within {PROCESS_A_START_TIMEOUT_S:g} s "
                f"({self.tracker.describe_exit()})"
            )

    async def _offered_and_connected(self) -> None:
        log.info("waiting for the server's offer (signaling: %s)", self.args.signaling)
        message = await self.signaling.receive()
        if not (isinstance(message, RTCSessionDescription) and message.type == "offer"):
            raise SignalingError("the server hung up during signaling")
        try:
            await self.pc.setRemoteDescription(message)
            await self.pc.setLocalDescription(await self.pc.createAnswer())
        except Exception as exc:  # aiortc raises whatever a malformed offer provokes
            raise PeerFailure(f"the server's offer is unusable: {one_line(exc)}") from None
        await self.signaling.send(self.pc.localDescription)
        await first_of(self.connected, self.lost)
        if not self.connected.is_set():
            raise PeerFailure("could not connect to the server (ICE failed)")
        log.info("connected; tracking the ball in process_a (pid %s)", self.tracker.pid)

    def _failure(self) -> str | None:
        """Why the session cannot go on, or None."""
        if self.process_a_died.is_set():
            return f"process_a (pid {self.tracker.pid}) died ({self.process_a_exit})"
        aborted = self.abort_reason if self.server_abort.is_set() else None
        return link_failure("server", self.channel, self.lost, aborted)

    async def _watch(self, until: tuple[asyncio.Event, ...], seconds: float | None) -> str | None:
        """Track and report until an event in `until` is set, a failure, or `seconds` pass."""
        wake = (self.lost, self.channel.closed, self.server_abort, self.process_a_died)
        return await watch(until, wake, self._failure, self._tick, seconds)

    async def _tick(self, now: float) -> None:
        if self.accepting and self.stall.update(now, self.received):
            log.warning(
                "warning: no frame received for %.0f s (received %d)",
                self.stall.after_s,
                self.received,
            )
        if now - self._last_stats >= STATS_INTERVAL_S and not self.final_sent:
            self._last_stats = now
            self.channel.send(protocol.encode_stats(self.stats(final=False)))
        if not self.args.verbose and self.accepting and self.progress.due(now):
            s = self.stats(final=False)
            fps = self.progress.rate(s.received, now)
            print(
                f"received {s.received:6d} ({fps:5.1f} fps)  coordinates sent {self.sent:6d}  "
                f"dropped {s.dropped}  unreadable {s.unreadable}  no ball {s.missed}  "
                f"incomplete {s.incomplete}",
                flush=True,
            )

    async def _settle_after_end(self) -> None:
        """Let in-flight frames arrive and process_a finish before the final counters."""
        deadline = time.monotonic() + END_CAP_S
        while time.monotonic() < deadline and not self._failure():
            caught_up = self.max_frame_seen >= self.end_frames - 1
            quiet = time.monotonic() - self.last_frame_at >= END_SETTLE_S
            if (caught_up or quiet) and self.tracker.idle():
                return
            await asyncio.sleep(0.02)

    async def _session(self, stop: asyncio.Event) -> str | None:
        """Track until the server ends (or we are stopped), then the end handshake.

        Returns None when the server acknowledged our final counters, else the reason the
        session failed.
        """
        failure = await self._watch((stop, self.ended), None)
        if failure is not None:
            return failure
        if self.ended.is_set():
            await self._settle_after_end()
        # No frame taken after this point, every result delivered: the counters are final.
        self.accepting = False
        if not await self.tracker.drain(DRAIN_TIMEOUT_S):
            log.warning("process_a did not finish its last frames within %g s", DRAIN_TIMEOUT_S)
        failure = self._failure()
        if failure is not None:
            return failure
        self.channel.send(protocol.encode_stats(self.stats(final=True)))
        self.final_sent = True
        failure = await self._watch((self.server_bye,), protocol.END_GRACE_S)
        if failure is not None:
            return failure
        if not self.server_bye.is_set():
            return (
                f"the server did not acknowledge the end of the session within "
                f"{protocol.END_GRACE_S:g} s"
            )
        self.channel.send(protocol.BYE)
        await self.channel.flushed(FLUSH_TIMEOUT_S)
        return None

    async def _abort(self) -> None:
        """Tell the server why we give up, when it can still hear it."""
        if self.process_a_died.is_set() and self.channel.is_open:
            self.channel.send(protocol.encode_abort("process_a_died"))
            await self.channel.flushed(FLUSH_TIMEOUT_S)

    def _print_summary(self) -> None:
        s = self.stats(final=True)
        print(
            f"\n== Rebound client ==\nframes received {s.received}  coordinates sent {self.sent}"
            f"  dropped {s.dropped}  unreadable {s.unreadable}  no ball {s.missed}"
            f"  incomplete {s.incomplete}",
            flush=True,
        )
        ignored = self.ignored + sctp_guard.dropped
        ignored.update({f"{k}_handler_error": v for k, v in self.handler_errors.items()})
        if ignored:
            print(f"messages ignored {', '.join(f'{k} {v}' for k, v in sorted(ignored.items()))}")

    async def run(self, stop: asyncio.Event) -> int:
        """Check signaling, start process_a, connect, track until the server ends."""
        return await run_peer(
            self._run(stop), prog=PROG, signaling=self.signaling, close=self.close
        )

    async def _run(self, stop: asyncio.Event) -> str | None:
        await prepare(self.signaling, stop)  # credentials before process_a
        await self._start_process_a(stop)
        timeout = self.args.connect_timeout  # counted from here: this peer is ready
        await within(
            self._offered_and_connected(),
            stop,
            timeout,
            NoPeer(f"no server offer/connection within {timeout:g} s"),
        )
        await channel_opens(self.channel.opened, stop)
        failure = await self._session(stop)
        self._print_summary()
        if failure is not None:
            await self._abort()
        if self.recorder is not None:
            try:
                await self.recorder.close()
                print(f"recording written to {self.recorder.path}", flush=True)
            except recorder.RecordError as exc:
                failure = failure or str(exc)
        return failure

    async def close(self) -> None:
        """Stop the consumer, process_a, the peer connection and signaling."""
        self.tracker.detach()
        if self.receive_path is not None:
            self.receive_path.stop()
        if self._consumer is not None:
            self._consumer.cancel()
            with contextlib.suppress(asyncio.CancelledError, MediaStreamError):
                await self._consumer
        await self.channel.stop()
        await self.pc.close()
        await asyncio.to_thread(self.tracker.close)
        await self.signaling.close()
        if self.recorder is not None:
            with contextlib.suppress(recorder.RecordError):
                await self.recorder.close()
        if self.window is not None:
            self.window.close()


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
