"""The server peer (offerer): streams the bouncing ball and measures the client's error.

python -m peers.server offer --verbose
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

from aiortc import RTCSessionDescription
from pydantic import ValidationError

from peers import cli, display, encoders, protocol, recorder, sctp_guard, signaling
from peers.ball import BallModel
from peers.channel import LABEL, PeerChannel
from peers.config import CODECS, MARKER_BAND_PX, SessionSpec
from peers.link import LinkMonitor
from peers.live_numbers import Snapshot
from peers.liveness import Stall
from peers.matching import CoordinateMatcher, Match
from peers.metrics import format_summary, summary_document
from peers.outputs import OutputError, SessionOutputs, report_unavailable
from peers.samples import SampleCollector
from peers.series_store import DecimatedSeries
from peers.series_writer import SeriesError
from peers.server_picture import ServerPicture
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
from peers.track import BallTrack
from peers.view import LiveView, ViewError

log = logging.getLogger("rebound.server")

MAX_METRICS_INTERVAL_S = 3600.0
PROG = "python -m peers.server"
FLAG_NAMES = {"duration_seconds": "--duration"}


def build_parser() -> argparse.ArgumentParser:
    """The server's command line (--help shows every default and bound)."""
    parser = cli.new_parser(
        PROG,
        "Rebound server peer: streams a bouncing ball over WebRTC and measures "
        "the error of the coordinates the client sends back. Exit codes: 0 session "
        "completed, 1 runtime failure, 2 bad usage, 3 no client within --connect-timeout, "
        "130 interrupted before connecting.",
        "offer",
    )
    defaults = SessionSpec(frames=0)
    fields = SessionSpec.model_fields

    def bounded(name: str, text: str) -> str:
        return f"{text}, {cli.field_range(fields[name])}"

    session = parser.add_argument_group("session")
    session.add_argument(
        "--width", type=int, default=defaults.width, help=bounded("width", "frame width (px)")
    )
    session.add_argument(
        "--height",
        type=int,
        default=defaults.height,
        help=bounded("height", f"frame height (px; the top {MARKER_BAND_PX} rows hold the marker)"),
    )
    session.add_argument(
        "--fps", type=int, default=defaults.fps, help=bounded("fps", "frames per second")
    )
    session.add_argument(
        "--radius",
        type=cli.number(),
        default=defaults.radius,
        help=bounded(
            "radius",
            "ball radius (px); the ball must fit: 2*radius+2 <= "
            f"min(width, height-{MARKER_BAND_PX})",
        ),
    )
    session.add_argument(
        "--speed",
        type=cli.number(),
        default=defaults.speed,
        help=bounded("speed", "ball speed (px/s)"),
    )
    session.add_argument(
        "--seed", type=int, default=defaults.seed, help=bounded("seed", "start position/direction")
    )
    session.add_argument(
        "--frames", type=int, default=0, help=bounded("frames", "frames to send (0 = no limit)")
    )
    session.add_argument(
        "--duration",
        type=cli.number(),
        default=0.0,
        help=bounded(
            "duration_seconds", "seconds to stream (0 = no limit); the first limit reached ends"
        ),
    )
    media = parser.add_argument_group("media")
    media.add_argument(
        "--codec",
        choices=CODECS,
        default=defaults.codec,
        help="video codec, the only one offered (the client decodes either)",
    )
    media.add_argument(
        "--bitrate-kbps",
        type=int,
        default=defaults.bitrate_kbps,
        metavar="N",
        help=bounded("bitrate_kbps", "target video bitrate in kbit/s, held by the encoder"),
    )
    parser.add_argument(
        "--summary-json",
        type=Path,
        metavar="PATH",
        help="write the session summary as JSON to PATH (a file in an existing, writable "
        "directory; checked before the session starts)",
    )
    parser.add_argument(
        "--series",
        type=Path,
        metavar="PATH",
        help="write one JSON line per frame sent to PATH (truth, detection, error, latency, "
        "outcome; docs/CONTRACTS.md)",
    )
    parser.add_argument(
        "--report",
        type=Path,
        metavar="PATH.html",
        help="at the end, write a self-contained HTML report (plots and frames inline) to "
        "PATH.html (needs matplotlib: the `report` extra)",
    )
    parser.add_argument(
        "--display",
        action="store_true",
        help="show the frames with the truth (green) and the client's detection (red) in a "
        "window (needs OpenCV's GUI build: make install-gui)",
    )
    parser.add_argument(
        "--record",
        type=Path,
        metavar="PATH",
        help="record the frames with the truth and the detection drawn to PATH "
        f"({', '.join(recorder.FORMATS)})",
    )
    view = parser.add_argument_group("live view")
    view.add_argument(
        "--view-port",
        type=cli.port_number,
        metavar="N",
        help="serve a live view (video, truth, detection, running numbers) on "
        "http://127.0.0.1:N/ (0: any free port, printed)",
    )
    view.add_argument(
        "--view-host",
        default="127.0.0.1",
        metavar="ADDR",
        help="address the live view listens on; 0.0.0.0 shows it to the whole network "
        "(kubectl port-forward works with the default)",
    )
    parser.add_argument(
        "--metrics-interval",
        type=cli.number(0, MAX_METRICS_INTERVAL_S, above=True),
        default=2.0,
        metavar="S",
        help="publish live metrics every S seconds (configmap signaling), "
        + cli.describe_range(0, MAX_METRICS_INTERVAL_S, above=True),
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
            codec=args.codec,
            bitrate_kbps=args.bitrate_kbps,
        )
    except ValidationError as exc:
        raise cli.UsageError(cli.describe_validation_error(exc, FLAG_NAMES)) from None


OUTPUT_FLAGS = {
    "summary_json": "--summary-json",
    "series": "--series",
    "report": "--report",
    "record": "--record",
}


def validate_args(args: argparse.Namespace) -> SessionSpec:
    """Check every flag up front so a bad value fails before any network activity."""
    spec = spec_from_args(args)
    cli.validate_common_arguments(args)
    for name, flag in OUTPUT_FLAGS.items():
        if getattr(args, name) is not None:
            cli.check_output_path(flag, getattr(args, name))
    if args.report is not None and (problem := report_unavailable()):
        raise cli.UsageError(problem)
    if problem := encoders.unavailable(spec.codec):
        raise cli.UsageError(problem)
    if args.record is not None and (problem := recorder.check_path(args.record)):
        raise cli.UsageError(problem)
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
        # With ConfigMap signaling the server stores a bounded copy of its series in its own
        # ConfigMap at the end (the BallSession's report; docs/observability.md).
        self.series_store = DecimatedSeries() if args.signaling == "configmap" else None
        try:
            self.outputs = SessionOutputs(
                args.series, args.report, spec, self.model, also=self.series_store
            )
        except OutputError as exc:
            raise cli.UsageError(str(exc)) from None
        self.series = self.outputs.writer
        self.samples = SampleCollector()
        self.phase = "waiting for the client"
        self.last_match: Match | None = None
        self.window = display.Window.for_program("peers.server") if args.display else None
        if args.display and self.window is None:
            log.info("--display: %s; running without a window", display.unavailable_reason())
        self.recorder = None if args.record is None else recorder.Recorder(args.record, spec.fps)
        self.picture = (
            ServerPicture(self.model, self._snapshot, self.window, self.recorder)
            if self.window is not None or self.recorder is not None
            else None
        )
        self.view: LiveView | None = None
        if args.view_port is not None:
            self.view = LiveView(
                self.model, self._snapshot, host=args.view_host, port=args.view_port, fps=spec.fps
            )
        self.signaling = signaling.create("offer", args)
        self.pc = new_peer_connection(cli.parse_ice_servers(args.ice_servers))
        self.track = BallTrack(
            self.model,
            max_frames=spec.frames,
            max_seconds=spec.duration_seconds,
            on_sent=self.matcher.on_frame_sent if self.series is None else self._on_sent,
        )
        self.handler_errors: Counter[str] = Counter()
        self.channel = PeerChannel(self._on_message, self.handler_errors)
        self.channel.attach(self.pc.createDataChannel(LABEL))
        sender = self.pc.addTrack(self.track)
        self.transceiver = next(t for t in self.pc.getTransceivers() if t.sender is sender)
        encoders.prefer(self.transceiver, spec.codec)
        self.link = LinkMonitor(sender, spec.bitrate_kbps)
        self.pc.on(
            "connectionstatechange", exception_proof(self._on_state, self.handler_errors, "state")
        )
        self.connected = asyncio.Event()
        self.lost = asyncio.Event()
        self.client_final = asyncio.Event()
        self.client_bye = asyncio.Event()
        self.client_abort = asyncio.Event()
        self.abort_reason = ""
        self.stall = Stall()
        self._last_report = 0.0
        self._last_publish = 0.0

    def _on_state(self) -> None:
        state = self.pc.connectionState
        log.debug("connection state: %s", state)
        if state == "connected":
            self.connected.set()
        elif state in ("failed", "closed"):
            self.lost.set()

    def _on_sent(self, index: int, now: float) -> None:
        self.matcher.on_frame_sent(index, now)
        if self.series is not None:
            self.series.on_sent(index, now)

    def _on_message(self, message: object) -> None:
        result = self.matcher.on_message(message, time.monotonic())
        if isinstance(result, Match):
            self.last_match = result
            if self.series is not None:
                self.series.on_match(result)
            if self.args.verbose:
                print(
                    f"frame {result.frame:6d}  detected ({result.detected.x:8.3f}, "
                    f"{result.detected.y:8.3f})  true ({result.truth.x:8.3f}, "
                    f"{result.truth.y:8.3f})  error {result.error_px:6.3f} px  "
                    f"latency {result.latency_s * 1000:6.1f} ms",
                    flush=True,
                )
        elif isinstance(result, protocol.FrameOutcome):
            if self.series is not None:
                self.series.on_outcome(result.frame, result.outcome)
        elif isinstance(result, protocol.SampleChunk):
            if self.series is not None:
                self.samples.on_chunk(result)
        elif isinstance(result, protocol.ClientStats) and result.final:
            self.client_final.set()
        elif isinstance(result, protocol.Bye):
            self.client_bye.set()
        elif isinstance(result, protocol.Abort):
            self.abort_reason = result.why
            self.client_abort.set()

    async def _offer(self) -> None:
        await self.pc.setLocalDescription(await self.pc.createOffer())
        await self.signaling.send(self.pc.localDescription)
        log.info("offer ready; waiting for the client (signaling: %s)", self.args.signaling)

    async def _answered_and_connected(self) -> None:
        message = await self.signaling.receive()
        if not (isinstance(message, RTCSessionDescription) and message.type == "answer"):
            raise SignalingError("the client hung up during signaling")
        try:
            await self.pc.setRemoteDescription(message)
        except Exception as exc:  # aiortc raises whatever a malformed answer provokes
            raise PeerFailure(f"the client's answer is unusable: {one_line(exc)}") from None
        self._use_codec()
        await first_of(self.connected, self.lost)
        if not self.connected.is_set():
            raise PeerFailure("could not connect to the client (ICE failed)")
        log.info(
            "connected; streaming %dx%d at %d fps", self.spec.width, self.spec.height, self.spec.fps
        )

    def _use_codec(self) -> None:
        """Encode with the negotiated codec at the session's bitrate (the offer had one codec)."""
        codec = encoders.negotiated(self.transceiver)
        if codec != self.spec.codec:
            raise PeerFailure(
                f"the client's answer chose {codec or 'no codec we offered'}, not {self.spec.codec}"
            )
        encoder = encoders.new_encoder(codec, self.spec.bitrate_kbps, self.spec.fps)
        encoders.install(self.transceiver.sender, encoder)
        self.link.codec = codec

    def summary(self) -> dict[str, Any]:
        """The summary as it stands: SUMMARY_KEYS, LINK_SUMMARY_KEYS, then the session
        parameters and the client's counters (peers.metrics.summary_document)."""
        stats = self.matcher.stats
        streaming_s = None
        if stats.first_frame_at is not None and stats.last_frame_at is not None:
            streaming_s = stats.last_frame_at - stats.first_frame_at + 1.0 / self.spec.fps
        client = self.matcher.client
        measured = {
            **stats.summary(),
            **self.link.summary(
                streaming_s,
                None if client is None else client.unreadable,
                None if client is None else client.incomplete,
            ),
        }
        return summary_document(measured, self.spec, client)

    def _report(self, now: float) -> None:
        summary = self.matcher.stats.summary()
        streaming = self.track.frames_sent > 0 and not self.track.finished.is_set()
        heard_lately = self.channel.silence.quiet_for(now) < 2 * protocol.HEARTBEAT_INTERVAL_S
        if streaming and heard_lately and self.stall.update(now, summary["frames_matched"]):
            log.warning(
                "warning: no frame matched for %.0f s (sent %d, matched %d): the client is "
                "alive but sends no coordinate that matches a frame",
                self.stall.after_s,
                summary["frames_sent"],
                summary["frames_matched"],
            )
        if self.args.verbose or now - self._last_report < 1.0:
            return
        self._last_report = now
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
            await self.signaling.publish_metrics(self.summary(), final=final)
        except SignalingError as exc:
            log.warning("could not publish metrics: %s", exc)

    async def _store_series(self, summary: dict[str, Any]) -> None:
        """With ConfigMap signaling: end the series and store its bounded copy (at most
        series.CONFIGMAP_BYTES) in our own ConfigMap, for the BallSession's report."""
        if self.series_store is None or self.series is None:
            return
        with contextlib.suppress(SeriesError):  # a --series file problem: outputs.finish says
            await self.series.close(summary)
        text = await asyncio.to_thread(self.series_store.configmap_text)
        if text is None:
            return
        try:
            await self.signaling.publish_series(text)
        except SignalingError as exc:
            log.warning("could not store the series: %s", exc)

    def _failure(self) -> str | None:
        """Why the session cannot go on, or None."""
        aborted = self.abort_reason if self.client_abort.is_set() else None
        return link_failure("client", self.channel, self.lost, aborted)

    async def _watch(self, until: tuple[asyncio.Event, ...], seconds: float | None) -> str | None:
        """Stream and report until an event in `until` is set, a failure, or `seconds` pass."""
        wake = (self.lost, self.channel.closed, self.client_abort)
        return await watch(until, wake, self._failure, self._tick, seconds)

    async def _tick(self, now: float) -> None:
        await self.link.sample()
        self._report(now)
        if self.series is not None:
            self.series.flush(now)
        if now - self._last_publish >= self.args.metrics_interval:
            self._last_publish = now
            await self._publish(final=False)

    async def _stop_track(self) -> None:
        if not self.track.finished.is_set():
            self.track.request_stop()  # the blank flush frame, then the track ends
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(1.0):
                    await self.track.finished.wait()
            self.track.finish()

    async def _session(self, stop: asyncio.Event) -> str | None:
        """Stream until a limit, a stop or the client's own end; then the end handshake.

        Returns None when the handshake completed (the client's final counters arrived),
        else the reason the session failed.
        """
        failure = await self._watch((stop, self.track.finished, self.client_final), None)
        if failure is not None:
            return failure
        await self._stop_track()
        if not self.client_final.is_set():
            self.channel.send(protocol.encode_end(self.track.frames_sent))
            failure = await self._watch((self.client_final,), protocol.END_GRACE_S)
            if failure is not None:
                return failure
            if not self.client_final.is_set():
                return (
                    f"the client's final counters did not arrive within "
                    f"{protocol.END_GRACE_S:g} s of the end of the stream"
                )
        self.channel.send(protocol.BYE)
        await self._watch((self.client_bye,), protocol.BYE_WAIT_S)
        return None

    async def _write_summary(self) -> dict[str, Any]:
        await self.link.sample()
        summary = self.summary()
        print("\n== Rebound session summary ==")
        print(format_summary(summary))
        ignored = (
            self.matcher.rejected + sctp_guard.dropped + self.link.rejected + self.samples.rejected
        )
        ignored.update({f"{k}_handler_error": v for k, v in self.handler_errors.items()})
        if ignored:
            print(f"messages ignored   {', '.join(f'{k} {v}' for k, v in sorted(ignored.items()))}")
        client = self.matcher.client
        if client is not None:
            print(
                f"client counters    received {client.received}  dropped {client.dropped}  "
                f"unreadable {client.unreadable}  no ball {client.missed}  "
                f"incomplete {client.incomplete}" + ("" if client.final else "  (not final)")
            )
        sys.stdout.flush()
        if self.args.summary_json is not None:
            try:
                self.args.summary_json.write_text(cli.dump_json(summary) + "\n")
            except OSError as exc:
                raise PeerFailure(
                    f"cannot write --summary-json {self.args.summary_json}: {exc.strerror or exc}"
                ) from None
        return summary

    async def run(self, stop: asyncio.Event) -> int:
        """Signal, stream until a limit/stop/loss, then summarise. Returns the exit code."""
        return await run_peer(
            self._run(stop), prog=PROG, signaling=self.signaling, close=self.close
        )

    def _snapshot(self) -> Snapshot:
        stats = self.matcher.stats
        return Snapshot(
            self.phase,
            stats.frames_sent,
            stats.errors_px,
            stats.latencies_s,
            stats.frames_dropped_by_client,
            self.last_match,
        )

    async def _start_view(self) -> None:
        if self.view is None:
            return
        try:
            await self.view.start()
        except ViewError as exc:
            raise cli.UsageError(str(exc)) from None
        print(f"live view: {self.view.url}", flush=True)

    async def _run(self, stop: asyncio.Event) -> str | None:
        await prepare(self.signaling, stop)
        await self._start_view()
        await within(self._offer(), stop)
        timeout = self.args.connect_timeout
        await within(
            self._answered_and_connected(),
            stop,
            timeout,
            NoPeer(f"no client connected within {timeout:g} s"),
        )
        await channel_opens(self.channel.opened, stop)
        self._last_publish = time.monotonic()
        self.phase = "streaming"
        if self.picture is not None:
            self.picture.start()
        failure = await self._session(stop)
        self.phase = "ended" if failure is None else "failed"
        if self.picture is not None:
            await self.picture.stop()
        summary = await self._write_summary()
        if self.series is not None:
            self.series.add_lines(self.samples.lines())
        await self._store_series(summary)  # before the summary: the operator ends on that
        await self._publish(final=True)
        try:
            await self.outputs.finish(summary)
        except OutputError as exc:
            raise PeerFailure(str(exc)) from None
        if self.args.report is not None:
            print(f"report written to {self.args.report}", flush=True)
        if self.recorder is not None:
            try:
                await self.recorder.close()
            except recorder.RecordError as exc:
                raise PeerFailure(str(exc)) from None
            print(f"recording written to {self.recorder.path}", flush=True)
        return failure

    async def close(self) -> None:
        """Close the track, the peer connection and signaling."""
        if not self.track.finished.is_set():
            self.track.finish()
        await self.outputs.close()
        if self.view is not None:
            await self.view.stop()
        if self.picture is not None:
            await self.picture.stop()
        if self.recorder is not None:
            with contextlib.suppress(recorder.RecordError):
                await self.recorder.close()
        if self.window is not None:
            self.window.close()
        await self.channel.stop()
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
