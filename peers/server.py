"""The server peer (offerer): streams the bouncing ball and measures the client's error.

python -m peers.server offer --verbose
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import sys
import time
from pathlib import Path
from typing import Any

from aiortc import RTCDataChannel, RTCPeerConnection, RTCSessionDescription
from pydantic import ValidationError

from peers import cli, protocol, signaling
from peers.ball import BallModel
from peers.config import SessionSpec
from peers.matching import CoordinateMatcher, Match
from peers.metrics import format_summary
from peers.session import INTERRUPTED, TIMED_OUT, connect_within, fail, first_of
from peers.signaling.base import SignalingError
from peers.track import BallTrack

log = logging.getLogger("rebound.server")

END_GRACE_S = 5.0
"""After the last frame: how long to wait for the client's final counters."""
PROG = "python -m peers.server"
FLAG_NAMES = {"duration_seconds": "--duration"}


def build_parser() -> argparse.ArgumentParser:
    """The server's command line."""
    parser = cli.new_parser(
        PROG,
        "Rebound server peer: streams a bouncing ball over WebRTC and measures "
        "the error of the coordinates the client sends back.",
        "offer",
    )
    defaults = SessionSpec(frames=0)
    session = parser.add_argument_group("session")
    session.add_argument("--width", type=int, default=defaults.width, help="frame width (px)")
    session.add_argument("--height", type=int, default=defaults.height, help="frame height (px)")
    session.add_argument("--fps", type=int, default=defaults.fps, help="frames per second")
    session.add_argument("--radius", type=float, default=defaults.radius, help="ball radius (px)")
    session.add_argument("--speed", type=float, default=defaults.speed, help="ball speed (px/s)")
    session.add_argument("--seed", type=int, default=defaults.seed, help="start position/direction")
    session.add_argument("--frames", type=int, default=0, help="frames to send (0 = no limit)")
    session.add_argument(
        "--duration",
        type=float,
        default=0.0,
        help="seconds to stream (0 = no limit); the first limit reached ends",
    )
    parser.add_argument(
        "--summary-json",
        type=Path,
        metavar="PATH",
        help="write the session summary as JSON to PATH",
    )
    parser.add_argument(
        "--metrics-interval",
        type=float,
        default=2.0,
        metavar="S",
        help="publish live metrics every S seconds (configmap signaling)",
    )
    cli.add_common_arguments(parser)
    signaling.add_arguments(parser)
    return parser


def spec_from_args(args: argparse.Namespace) -> SessionSpec:
    """The session the flags describe; UsageError with a one-line message if invalid."""
    try:
        return SessionSpec(
            width=args.width,
            height=args.height,
            fps=args.fps,
            radius=args.radius,
            speed=args.speed,
            seed=args.seed,
            frames=args.frames,
            duration_seconds=args.duration,
        )
    except ValidationError as exc:
        raise cli.UsageError(cli.describe_validation_error(exc, FLAG_NAMES)) from None


def validate_args(args: argparse.Namespace) -> SessionSpec:
    """Check every flag up front so a bad value fails before any network activity."""
    spec = spec_from_args(args)
    cli.validate_common_arguments(args)
    if args.metrics_interval <= 0:
        raise cli.UsageError(f"--metrics-interval {args.metrics_interval:g} must be > 0")
    if args.summary_json is not None and not args.summary_json.parent.is_dir():
        raise cli.UsageError(f"--summary-json {args.summary_json}: directory does not exist")
    return spec


class Server:
    """One server session: peer connection, track, matcher, and the live report."""

    def __init__(self, spec: SessionSpec, args: argparse.Namespace) -> None:
        self.spec = spec
        self.args = args
        self.model = BallModel(
            spec.width, spec.height, spec.radius, spec.speed, spec.fps, seed=spec.seed
        )
        self.matcher = CoordinateMatcher(self.model)
        self.signaling = signaling.create("offer", args)
        self.pc = RTCPeerConnection(cli.rtc_configuration(cli.parse_ice_servers(args.ice_servers)))
        self.track = BallTrack(
            self.model,
            max_frames=spec.frames,
            max_seconds=spec.duration_seconds,
            on_sent=self.matcher.on_frame_sent,
        )
        self.channel: RTCDataChannel = self.pc.createDataChannel("coordinates")
        self.channel.on("message", self._on_message)
        self.pc.addTrack(self.track)
        self.pc.on("connectionstatechange", self._on_state)
        self.connected = asyncio.Event()
        self.lost = asyncio.Event()
        self.final_stats = asyncio.Event()
        self._last_report = 0.0

    def _on_state(self) -> None:
        state = self.pc.connectionState
        log.debug("connection state: %s", state)
        if state == "connected":
            self.connected.set()
        elif state in ("failed", "closed"):
            self.lost.set()

    def _on_message(self, message: object) -> None:
        result = self.matcher.on_message(message, time.monotonic())
        if isinstance(result, Match) and self.args.verbose:
            print(
                f"frame {result.frame:6d}  detected ({result.detected.x:8.3f}, "
                f"{result.detected.y:8.3f})  true ({result.truth.x:8.3f}, {result.truth.y:8.3f})"
                f"  error {result.error_px:6.3f} px  latency {result.latency_s * 1000:6.1f} ms",
                flush=True,
            )
        elif isinstance(result, protocol.ClientStats) and result.final:
            self.final_stats.set()

    async def _signal(self) -> None:
        await self.signaling.connect()
        await self.pc.setLocalDescription(await self.pc.createOffer())
        log.info("offer ready; waiting for the client (signaling: %s)", self.args.signaling)
        await self.signaling.send(self.pc.localDescription)
        while True:
            message = await self.signaling.receive()
            if isinstance(message, RTCSessionDescription) and message.type == "answer":
                await self.pc.setRemoteDescription(message)
                break
            if message is None or message is signaling.BYE:
                raise SignalingError("the client hung up during signaling")
        await self.connected.wait()
        log.info(
            "connected; streaming %dx%d at %d fps", self.spec.width, self.spec.height, self.spec.fps
        )

    def _report(self) -> None:
        summary = self.matcher.stats.summary()
        mean = summary["mean_error_px"]
        p50 = summary["latency_ms_p50"]
        print(
            f"sent {summary['frames_sent']:6d}  matched {summary['frames_matched']:6d}  "
            f"mean error {'n/a' if mean is None else f'{mean:.3f}'} px  "
            f"latency p50 {'n/a' if p50 is None else f'{p50:.1f}'} ms",
            flush=True,
        )

    async def _publish(self, final: bool) -> None:
        try:
            await self.signaling.publish_metrics(self.matcher.stats.summary(), final=final)
        except SignalingError as exc:
            log.warning("could not publish metrics: %s", exc)

    async def _stream(self, stop: asyncio.Event) -> None:
        last_publish = time.monotonic()
        events = (stop, self.lost, self.track.finished, self.final_stats)
        while not any(event.is_set() for event in events):
            await first_of(*events, timeout=1.0)
            now = time.monotonic()
            if not self.args.verbose and now - self._last_report >= 1.0:
                self._last_report = now
                self._report()
            if now - last_publish >= self.args.metrics_interval:
                last_publish = now
                await self._publish(final=False)

    async def _finish(self) -> None:
        if not self.track.finished.is_set():
            self.track.request_stop()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(1.0):
                    await self.track.finished.wait()
            self.track.finish()
        if self.lost.is_set() or self.final_stats.is_set() or self.channel.readyState != "open":
            return
        self.channel.send(protocol.encode_end(self.track.frames_sent))
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(END_GRACE_S):
                await first_of(self.final_stats, self.lost)

    def _write_summary(self) -> dict[str, Any]:
        summary = self.matcher.stats.summary()
        print("\n== Rebound session summary ==")
        print(format_summary(summary))
        if self.matcher.rejected:
            rejected = ", ".join(f"{k} {v}" for k, v in sorted(self.matcher.rejected.items()))
            print(f"messages ignored   {rejected}")
        client = self.matcher.client
        if client is not None:
            print(
                f"client counters    received {client.received}  dropped {client.dropped}  "
                f"unreadable {client.unreadable}  no ball {client.missed}"
            )
        sys.stdout.flush()
        if self.args.summary_json is not None:
            self.args.summary_json.write_text(cli.dump_json(summary) + "\n")
        return summary

    async def run(self, stop: asyncio.Event) -> int:
        """Signal, stream until a limit/stop/loss, then summarise. Returns the exit code."""
        try:
            try:
                outcome = await connect_within(self._signal(), stop, self.args.connect_timeout)
            except SignalingError as exc:
                return await self._fail(str(exc), cli.EXIT_FAILED)
            if outcome == INTERRUPTED:
                return cli.EXIT_INTERRUPTED
            if outcome == TIMED_OUT:
                return await self._fail(
                    f"no client connected within {self.args.connect_timeout:g} s",
                    cli.EXIT_TIMEOUT,
                )
            await self._stream(stop)
            await self._finish()
            self._write_summary()
            await self._publish(final=True)
            if self.lost.is_set() and not self.final_stats.is_set():
                return await self._fail(
                    "the client disconnected before the session ended", cli.EXIT_FAILED
                )
            return cli.EXIT_OK
        finally:
            await self.close()

    async def _fail(self, message: str, code: int) -> int:
        return await fail(PROG, self.signaling, message, code)

    async def close(self) -> None:
        """Close the track, the peer connection and signaling."""
        if not self.track.finished.is_set():
            self.track.finish()
        await self.pc.close()
        await self.signaling.close()


async def serve(args: argparse.Namespace, stop: asyncio.Event) -> int:
    """Validate the flags, then run one server session."""
    spec = validate_args(args)
    cli.configure_logging(args.verbose)
    return await Server(spec, args).run(stop)


def main(argv: list[str] | None = None) -> int:
    """Console entry point: `python -m peers.server`."""
    args = build_parser().parse_args(argv)
    return cli.run(lambda stop: serve(args, stop), "python -m peers.server")


if __name__ == "__main__":
    sys.exit(main())
