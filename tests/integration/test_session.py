"""Real sessions over loopback: real aiortc on both ends, real process_a."""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path

import pytest
from loopback import children_of, finish, free_port, start_session, wait_gone

from peers import client as client_mod
from peers import server as server_mod
from peers.metrics import SUMMARY_KEYS
from peers.track import BallTrack


def test_a_full_session_is_accurate_and_leaves_nothing_behind(tmp_path: Path) -> None:
    session = start_session(tmp_path, ["--frames", "180", "--fps", "30"])
    time.sleep(4)
    helpers = children_of(session.client)
    assert helpers, "the client should be running process_a"
    server, client = finish(session.server), finish(session.client)
    assert server.code == 0, server.stderr
    assert client.code == 0, client.stderr
    summary = session.summary()
    assert tuple(summary) == SUMMARY_KEYS
    assert summary["frames_sent"] == 180
    assert summary["frames_matched"] >= 0.95 * summary["frames_sent"]
    assert summary["mean_error_px"] < 0.25
    assert summary["frames_dropped_by_client"] is not None
    assert 25 <= summary["achieved_fps"] <= 32
    assert summary["latency_ms_p50"] > 0
    assert "Rebound session summary" in server.stdout
    assert "Traceback" not in server.stderr + client.stderr
    assert wait_gone(helpers, 5) == []


def test_verbose_prints_every_coordinate(tmp_path: Path) -> None:
    session = start_session(tmp_path, ["--frames", "40", "--verbose"], ["--verbose"])
    server, client = finish(session.server), finish(session.client)
    assert server.code == client.code == 0
    matched = session.summary()["frames_matched"]
    lines = [line for line in server.stdout.splitlines() if line.startswith("frame ")]
    assert len(lines) == matched
    assert "error" in lines[0] and "latency" in lines[0]
    assert sum(line.startswith("frame ") for line in client.stdout.splitlines()) == matched


@pytest.mark.parametrize("target", ["server", "client"])
def test_ctrl_c_ends_both_peers_cleanly(tmp_path: Path, target: str) -> None:
    session = start_session(tmp_path, ["--duration", "0"])  # until interrupted
    time.sleep(5)
    helpers = children_of(session.client)
    session.interrupt(target, signal.SIGINT)
    server, client = finish(session.server, 30), finish(session.client, 30)
    assert server.code == 0, server.stderr
    assert client.code == 0, client.stderr
    assert "Traceback" not in server.stderr + client.stderr
    summary = session.summary()
    assert summary["frames_sent"] > 30
    assert summary["frames_matched"] >= 0.9 * summary["frames_sent"]
    assert wait_gone(helpers, 5) == []


def test_a_killed_client_fails_the_server_and_orphans_nothing(tmp_path: Path) -> None:
    session = start_session(tmp_path, ["--duration", "0", "--connect-timeout", "20"])
    time.sleep(5)
    helpers = children_of(session.client)
    assert helpers
    session.client.kill()
    server = finish(session.server, 60)
    finish(session.client)
    assert server.code == 1
    assert "the client went silent" in server.stderr
    assert session.summary()["frames_sent"] > 0
    assert wait_gone(helpers, 5) == [], "process_a must exit when its client dies"


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
