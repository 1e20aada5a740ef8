"""The client's receive path on real aiortc: frames released by their own last packet, and
bounded buffering under packet loss (a lossy link between two network namespaces)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from loopback import REPO, finish

from bench.lossy import CLIENT_ADDRESS, SERVER_ADDRESS, LossyLink, unavailable
from bench.sessions import free_port
from peers.config import LinkSummary


def test_a_frame_is_released_without_waiting_for_the_next_one(tmp_path: Path) -> None:
    """At 4 fps aiortc's buffer would hold every frame 250 ms (until the next one starts)."""
    from loopback import start_session

    session = start_session(tmp_path, ["--fps", "4", "--frames", "24"])
    server, client = finish(session.server), finish(session.client)
    assert (server.code, client.code) == (0, 0), server.stderr + client.stderr
    summary = session.summary()
    assert summary["frames_matched"] >= 23
    assert summary["latency_ms_p50"] < 125, summary
    assert summary["frames_incomplete"] == 0


def lossy_session(
    tmp_path: Path, link: LossyLink, server_args: list[str]
) -> tuple[dict[str, object], str, str]:
    from loopback import peer

    port = str(free_port())
    summary = tmp_path / "summary.json"
    signaling = ["--signaling-host", SERVER_ADDRESS, "--signaling-port", port]
    python = [sys.executable, "-m"]
    server = peer(
        "server",
        "offer",
        *signaling,
        "--summary-json",
        str(summary),
        *server_args,
        command=link.wrap("server", [*python, "peers.server"]),
    )
    client = peer(
        "client", "answer", *signaling, command=link.wrap("client", [*python, "peers.client"])
    )
    s, c = finish(server, 120), finish(client, 120)
    assert (s.code, c.code) == (0, 0), s.stderr[-2000:] + c.stderr[-2000:]
    import json

    return json.loads(summary.read_text()), s.stdout, c.stdout


@pytest.mark.skipif(unavailable() is not None, reason=str(unavailable()))
def test_five_percent_loss_costs_frames_not_seconds(tmp_path: Path) -> None:
    with LossyLink(to_client_pct=5.0) as link:
        summary, server_out, _ = lossy_session(
            tmp_path, link, ["--frames", "300", "--bitrate-kbps", "1000"]
        )
        dropped_to_client, dropped_to_server = link.dropped()
    assert CLIENT_ADDRESS != SERVER_ADDRESS
    link_summary = LinkSummary.model_validate(summary)
    assert dropped_to_client > 0 and dropped_to_server == 0
    # the loss the client reported over RTCP is the loss the link made (~5% of media packets)
    assert link_summary.packet_loss_pct is not None
    assert 2.0 <= link_summary.packet_loss_pct <= 9.0, summary
    assert link_summary.packets_lost is not None and link_summary.packets_lost > 0
    # aiortc's own buffer ratchets up to 1-1.7 s here and stays there
    assert summary["latency_ms_p95"] < 400, summary
    assert summary["frames_matched"] >= 0.8 * summary["frames_sent"], summary
    assert summary["mean_error_px"] < 0.25
    assert "frames spoilt" in server_out


@pytest.mark.skipif(unavailable() is not None, reason=str(unavailable()))
def test_the_lossy_link_really_loses_packets_and_cleans_up() -> None:
    with LossyLink(to_client_pct=50.0, to_server_pct=0.0) as link:
        namespaces = (link.server_ns, link.client_ns)
        import subprocess

        sender = subprocess.run(  # drops on arrival: the sender never notices
            link.wrap(
                "server",
                [
                    sys.executable,
                    "-c",
                    "import socket; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
                    f"for _ in range(400): s.sendto(b'x', ('{CLIENT_ADDRESS}', 9))",
                ],
            ),
            cwd=REPO,
            check=True,
        )
        assert sender.returncode == 0
        to_client, to_server = link.dropped()
    assert 120 <= to_client <= 280 and to_server == 0
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert not any(ns in listed for ns in namespaces)
