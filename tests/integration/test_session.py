"""Real sessions over loopback: real aiortc on both ends, real process_a."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
import sys
import time
import uuid
from pathlib import Path

import psutil
import pytest
from loopback import (
    children_of,
    finish,
    free_port,
    peer,
    start_session,
    wait_for_line,
    wait_gone,
    wait_untagged,
)

from peers import aiortc_internals, cli, encoders
from peers import client as client_mod
from peers import server as server_mod
from peers.config import LINK_SUMMARY_KEYS, SUMMARY_EXTRA_KEYS, LinkSummary
from peers.metrics import SUMMARY_KEYS
from peers.track import BallTrack

VARIANTS = [sys.executable, str(Path(__file__).with_name("peer_variants.py"))]


def client_counters(server_stdout: str) -> tuple[int, bool]:
    """The client's `received` counter as the server printed it, and whether it was final."""
    line = next(x for x in server_stdout.splitlines() if x.startswith("client counters"))
    match = re.search(r"received (\d+)", line)
    assert match is not None, line
    return int(match[1]), "(not final)" not in line


def test_a_full_session_is_accurate_and_leaves_nothing_behind(tmp_path: Path) -> None:
    session = start_session(tmp_path, ["--frames", "180", "--fps", "30"])
    time.sleep(4)
    helpers = children_of(session.client)
    assert helpers, "the client should be running process_a"
    server, client = finish(session.server), finish(session.client)
    assert server.code == 0, server.stderr
    assert client.code == 0, client.stderr
    summary = session.summary()
    assert tuple(summary) == SUMMARY_KEYS + LINK_SUMMARY_KEYS + SUMMARY_EXTRA_KEYS
    assert summary["session"]["frames"] == 180 and summary["session"]["width"] == 640
    assert summary["client"]["final"] is True
    assert summary["client"]["received"] >= summary["frames_matched"]
    assert summary["frames_sent"] == 180
    assert summary["frames_matched"] >= 0.95 * summary["frames_sent"]
    assert summary["mean_error_px"] < 0.25
    assert summary["frames_dropped_by_client"] is not None
    assert 25 <= summary["achieved_fps"] <= 32
    assert summary["latency_ms_p50"] > 0
    link = LinkSummary.model_validate(summary)
    assert (link.codec, link.target_bitrate_kbps) == ("VP8", 1000)
    assert link.measured_bitrate_kbps is not None
    assert 700 <= link.measured_bitrate_kbps <= 1200
    assert (link.frames_unreadable, link.frames_incomplete) == (0, 0)
    assert (link.ice_local_candidate_type, link.ice_remote_candidate_type) == ("host", "host")
    assert link.ice_protocol == "udp"
    assert link.packets_lost == 0 and link.packet_loss_pct == 0.0
    assert link.rtt_ms is not None and link.rtt_ms < 500
    assert "Rebound session summary" in server.stdout
    assert "Traceback" not in server.stderr + client.stderr
    assert wait_gone(helpers, 5) == []


async def test_h264_is_negotiated_and_encoded_at_the_target_bitrate(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    installed: list[object] = []
    install = server_mod.encoders.install

    def recording(sender: object, encoder: object) -> None:
        installed.append(encoder)
        install(sender, encoder)  # type: ignore[arg-type]

    monkeypatch.setattr(server_mod.encoders, "install", recording)
    server_args, client_args = in_process(
        ["--frames", "150", "--codec", "H264", "--bitrate-kbps", "400"]
    )
    server = server_mod.Server(server_mod.validate_args(server_args), server_args)
    client = client_mod.Client(client_args)
    assert await run_pair(server, client) == [0, 0]
    summary = server.summary()
    assert summary["codec"] == "H264" and summary["target_bitrate_kbps"] == 400
    assert 250 <= summary["measured_bitrate_kbps"] <= 500
    assert summary["frames_matched"] >= 140
    assert summary["mean_error_px"] < 0.25
    [encoder] = installed
    assert isinstance(encoder, encoders.FixedRateH264Encoder)
    assert encoder.codec is not None and encoder.codec.name == "libx264"
    [receiver] = client.pc.getReceivers()
    codecs = aiortc_internals.receiver_state(receiver)["codecs"].values()
    assert {c.mimeType for c in codecs} == {"video/H264", "video/rtx"}


def test_verbose_prints_every_coordinate(tmp_path: Path) -> None:
    session = start_session(tmp_path, ["--frames", "40", "--verbose"], ["--verbose"])
    server, client = finish(session.server), finish(session.client)
    assert server.code == client.code == 0
    matched = session.summary()["frames_matched"]
    lines = [line for line in server.stdout.splitlines() if line.startswith("frame ")]
    assert len(lines) == matched
    assert "error" in lines[0] and "latency" in lines[0]
    assert sum(line.startswith("frame ") for line in client.stdout.splitlines()) == matched


@pytest.mark.parametrize(
    ("target", "sig"),
    [("server", signal.SIGINT), ("client", signal.SIGINT), ("client", signal.SIGTERM)],
)
def test_ctrl_c_ends_both_peers_cleanly(tmp_path: Path, target: str, sig: int) -> None:
    session = start_session(tmp_path, ["--duration", "0"])  # until interrupted
    time.sleep(5)
    helpers = children_of(session.client)
    session.interrupt(target, sig)
    server, client = finish(session.server, 30), finish(session.client, 30)
    assert server.code == 0, server.stderr
    assert client.code == 0, client.stderr
    assert "Traceback" not in server.stderr + client.stderr
    summary = session.summary()
    assert summary["frames_sent"] > 30
    assert summary["frames_matched"] >= 0.9 * summary["frames_sent"]
    # issue 8, item 17: the client's final counters cover every frame it matched
    received, final = client_counters(server.stdout)
    assert final
    assert received >= summary["frames_matched"]
    assert "after_final" not in server.stdout
    assert wait_gone(helpers, 5) == []


@pytest.mark.parametrize("limit", [["--duration", "0"], ["--duration", "30"], ["--frames", "900"]])
def test_a_killed_client_fails_the_server_and_orphans_nothing(
    tmp_path: Path, limit: list[str]
) -> None:
    session = start_session(tmp_path, [*limit, "--connect-timeout", "20"])
    time.sleep(5)
    helpers = children_of(session.client)
    assert helpers
    session.client.kill()
    server = finish(session.server, 20)  # ICE consent alone would take ~30 s
    finish(session.client)
    assert server.code == 1, server.stderr  # also with a frame or time limit (item 20)
    assert "the client went silent (no data-channel message for 4 s)" in server.stderr
    assert session.summary()["frames_sent"] > 0
    assert wait_gone(helpers, 5) == [], "process_a must exit when its client dies"


@pytest.mark.parametrize("target", ["server", "client"])
def test_a_silent_peer_is_noticed_within_seconds(tmp_path: Path, target: str) -> None:
    """A frozen peer (SIGSTOP: sockets open, nothing sent) ends the other side with exit 1."""
    session = start_session(tmp_path, ["--duration", "0"])
    other = "client" if target == "server" else "server"
    try:
        time.sleep(5)
        session.interrupt(target, signal.SIGSTOP)
        result = finish(getattr(session, other), 20)
    finally:
        session.interrupt(target, signal.SIGCONT)
    assert result.code == 1, result.stderr
    assert f"the {target} went silent" in result.stderr
    assert "Traceback" not in result.stderr
    resumed = finish(getattr(session, target), 30)
    assert resumed.code == 1  # it wakes up to a session that is over


def test_process_a_death_fails_both_peers_fast(tmp_path: Path) -> None:
    session = start_session(tmp_path, ["--duration", "0"])
    time.sleep(5)
    process_a = [
        p
        for p in psutil.Process(session.client.pid).children()
        if "spawn_main" in " ".join(p.cmdline())
    ]
    assert len(process_a) == 1
    process_a[0].kill()
    client = finish(session.client, 20)
    server = finish(session.server, 20)
    assert client.code == 1, client.stderr
    assert f"process_a (pid {process_a[0].pid}) died (killed by SIGKILL)" in client.stderr
    assert server.code == 1, server.stderr
    assert "the client aborted the session (process_a_died)" in server.stderr


def test_a_data_channel_that_never_opens_fails_both_peers(tmp_path: Path) -> None:
    session = start_session(
        tmp_path, ["--duration", "0"], client_command=[*VARIANTS, "no-datachannel", "client"]
    )
    server, client = finish(session.server, 60), finish(session.client, 60)
    for result in (server, client):
        assert result.code == 1, result.stderr
        assert "the data channel did not open within 10 s of connecting" in result.stderr


def test_signaling_probes_and_bad_clients_do_not_take_the_session(tmp_path: Path) -> None:
    port = free_port()
    summary = tmp_path / "summary.json"
    server = peer(
        "server", "--signaling-port", str(port), "--frames", "60", "--summary-json", str(summary)
    )
    wait_for_line(server.stderr, "offer ready")
    idle = socket.create_connection(("127.0.0.1", port))  # an idle connection ...
    socket.create_connection(("127.0.0.1", port)).close()  # ... a port probe ...
    for junk in (b"{}\n", b"[1]\n", b'{"type":"foo"}\n', b"x" * 100_000):  # ... and garbage
        with socket.create_connection(("127.0.0.1", port)) as bad:
            bad.sendall(junk)
            time.sleep(0.05)
    try:
        client = finish(peer("client", "--signaling-port", str(port)), 60)
        result = finish(server, 60)
    finally:
        idle.close()
    assert (result.code, client.code) == (0, 0), result.stderr + client.stderr
    assert "Traceback" not in result.stderr + client.stderr
    refused = [line for line in result.stderr.splitlines() if "signaling: refused" in line]
    assert len(refused) >= 5
    assert any("longer than" in line for line in refused)
    assert json_summary(summary)["frames_matched"] >= 57


def json_summary(path: Path) -> dict[str, int]:
    return dict(json.loads(path.read_text()))


@pytest.mark.parametrize("module", ["server", "client"])
@pytest.mark.parametrize("delay", [0.5, 1.0, 1.5, 2.5])
def test_ctrl_c_during_start_up_is_a_quiet_130(module: str, delay: float) -> None:
    """A terminal's Ctrl-C (SIGINT to the whole process group) at any moment of start-up."""
    tag = uuid.uuid4().hex
    proc = peer(module, "--signaling-port", str(free_port()), tag=tag, new_session=True)
    time.sleep(delay)
    os.killpg(proc.pid, signal.SIGINT)
    result = finish(proc, 30)
    assert result.code == cli.EXIT_INTERRUPTED, result.stderr
    assert "Traceback" not in result.stderr
    assert "KeyboardInterrupt" not in result.stderr
    assert wait_untagged(tag) == []


@pytest.mark.parametrize("delay", [0.8, 1.5, 2.5, 4.0])
def test_a_client_killed_during_start_up_leaves_nothing_behind(delay: float) -> None:
    """Issue 8, item 14: `kill -9` of a client still starting must not orphan process_a."""
    tag = uuid.uuid4().hex
    proc = peer("client", "--signaling-port", str(free_port()), tag=tag)
    time.sleep(delay)
    proc.kill()
    finish(proc)
    assert wait_untagged(tag) == [], f"orphans after kill -9 at {delay} s"


class ScrambledTrack(BallTrack):
    """Sends frames out of order and skips every 7th: identity must still hold."""

    def index_for_slot(self, slot: int) -> int:
        pair = slot ^ 1  # 1, 0, 3, 2, 5, 4, ...
        return pair + pair // 6  # skips 6, 13, 20, ...


async def test_frame_identity_survives_reordered_and_skipped_frames(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(server_mod, "BallTrack", ScrambledTrack)
    port = str(free_port())
    server_args = server_mod.build_parser().parse_args(
        ["--frames", "120", "--speed", "600", "--signaling-port", port]
    )
    client_args = client_mod.build_parser().parse_args(["--signaling-port", port])
    server = server_mod.Server(server_mod.validate_args(server_args), server_args)
    client = client_mod.Client(client_args)
    codes = await asyncio.wait_for(
        asyncio.gather(server.run(asyncio.Event()), client.run(asyncio.Event())), 90
    )
    assert codes == [0, 0]
    summary = server.matcher.stats.summary()
    sent = summary["frames_sent"]
    assert sent == 120
    assert summary["frames_matched"] >= 0.95 * sent
    # at 600 px/s and 30 fps a coordinate tied to a neighbouring frame would be 20 px off
    assert summary["mean_error_px"] < 0.25
    assert summary["max_error_px"] < 1.0
    assert not server.matcher.rejected


async def run_pair(
    server: server_mod.Server, client: client_mod.Client, timeout: float = 90
) -> list[int]:
    return list(
        await asyncio.wait_for(
            asyncio.gather(server.run(asyncio.Event()), client.run(asyncio.Event())), timeout
        )
    )


def in_process(server_flags: list[str], client_flags: list[str] = ()) -> tuple:  # type: ignore[assignment, type-arg]
    port = str(free_port())
    server_args = server_mod.build_parser().parse_args([*server_flags, "--signaling-port", port])
    client_args = client_mod.build_parser().parse_args([*client_flags, "--signaling-port", port])
    return server_args, client_args


HOSTILE_TO_SERVER = [
    '{"k":"c","f":5,"x":' + "9" * 400 + ',"y":1}',  # killed the transport (OverflowError)
    '{"k":"c","f":-0,"x":1,"y":1}',
    '{"k":"c","f":3,"f":4,"x":1,"y":1}',
    '{"k":"s","received":1,"dropped":'
    + "9" * 401
    + ',"unreadable":0,"missed":0,"incomplete":0,"final":false}',
    '{"k":"s","received":99999,"dropped":0,"unreadable":0,"missed":0,"incomplete":0,"final":false}',
    '{"k":"end","frames":1}',
    "[" * 300,
    "garbage",
]


class HostileClient(client_mod.Client):
    """A client that opens with every kind of bad message, then behaves."""

    async def _session(self, stop: asyncio.Event) -> str | None:
        from aiortc.rtcsctptransport import WEBRTC_STRING

        channel = self.channel.channel
        assert channel is not None
        for text in HOSTILE_TO_SERVER:
            channel.send(text)
        sctp = channel.transport
        for raw in (b'{"k":"hb"}\xff', b"x" * 70_000):  # invalid UTF-8; over the size limit
            sctp._data_channel_queue.append((channel, WEBRTC_STRING, raw))
        await sctp._data_channel_flush()
        return await super()._session(stop)


class HostileServer(server_mod.Server):
    """A server that opens with every kind of bad message, then behaves."""

    async def _session(self, stop: asyncio.Event) -> str | None:
        from aiortc.rtcsctptransport import WEBRTC_STRING

        channel = self.channel.channel
        assert channel is not None
        for text in [
            '{"k":"end","frames":' + "9" * 400 + "}",
            '{"k":"end","frames":-0}',
            '{"k":"c","f":1,"x":1,"y":1}',
            '{"k":"abort","why":"\\u0000 not a token"}',
            "{}",
        ]:
            channel.send(text)
        sctp = channel.transport
        sctp._data_channel_queue.append((channel, WEBRTC_STRING, b"\xc3\x28"))
        await sctp._data_channel_flush()
        return await super()._session(stop)


async def test_no_message_from_the_client_ends_the_session_or_skews_a_number() -> None:
    server_args, client_args = in_process(["--frames", "90"])
    server = server_mod.Server(server_mod.validate_args(server_args), server_args)
    client = HostileClient(client_args)
    assert await run_pair(server, client) == [0, 0]
    summary = server.matcher.stats.summary()
    assert summary["frames_sent"] == 90
    assert summary["frames_matched"] >= 85
    assert summary["mean_error_px"] < 0.25
    assert summary["frames_dropped_by_client"] is not None
    assert summary["frames_dropped_by_client"] <= 90  # never the 401-digit one
    rejected = server.matcher.rejected
    assert rejected["bad_number"] == 3
    assert rejected["duplicate_key"] == 1
    assert rejected["implausible_counters"] == 1
    assert rejected["unexpected_kind"] == 1
    assert rejected["not_utf8"] == 1
    assert rejected["too_large"] == 1
    assert server.matcher.final is not None


async def test_no_message_from_the_server_ends_the_session() -> None:
    server_args, client_args = in_process(["--frames", "90"])
    server = HostileServer(server_mod.validate_args(server_args), server_args)
    client = client_mod.Client(client_args)
    assert await run_pair(server, client) == [0, 0]
    assert client.ignored["bad_number"] == 2
    assert client.ignored["unexpected_kind"] == 1
    assert client.ignored["not_utf8"] == 1
    assert server.matcher.stats.frames_matched >= 85


async def test_final_counters_that_never_arrive_fail_both_peers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Both peers agree: no final counters at the server, no bye at the client."""
    server_args, client_args = in_process(["--frames", "45"])
    server = server_mod.Server(server_mod.validate_args(server_args), server_args)
    client = client_mod.Client(client_args)
    send = client.channel.send

    def lose_the_final_counters(text: str) -> None:
        if '"final":true' not in text:
            send(text)

    monkeypatch.setattr(client.channel, "send", lose_the_final_counters)
    assert await run_pair(server, client) == [1, 1]


async def test_connect_timeout_starts_when_the_client_is_ready(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A process_a that takes longer to start than --connect-timeout is not a timeout."""
    server_args, client_args = in_process(["--frames", "30"], ["--connect-timeout", "2"])
    server = server_mod.Server(server_mod.validate_args(server_args), server_args)
    client = client_mod.Client(client_args)
    wait_ready = client.tracker.wait_ready

    async def slow_start(timeout: float) -> bool:
        await asyncio.sleep(3)
        return await wait_ready(timeout)

    monkeypatch.setattr(client.tracker, "wait_ready", slow_start)
    assert await run_pair(server, client) == [0, 0]


async def test_the_client_checks_credentials_before_starting_process_a(tmp_path: Path) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text("not: [valid")
    flags = ["--signaling", "configmap", "--configmap", "own", "--namespace", "ns"]
    if "--peer-configmap" in client_mod.build_parser().format_help():
        flags += ["--peer-configmap", "peer"]
    args = client_mod.build_parser().parse_args([*flags, "--kubeconfig", str(kubeconfig)])
    client = client_mod.Client(args)
    with pytest.raises(cli.UsageError, match="cannot use the signaling channel"):
        await client.run(asyncio.Event())
    assert client.tracker.pid is None  # process_a was never started
