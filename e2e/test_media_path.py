"""Codec, bitrate and the path the media took, on a real API server: what a BallSession asks
for reaches the peers, and what they measured (codec, bits actually sent, the selected ICE
candidate pair, RTT, loss) reaches its status through the schema (nothing pruned) and
`kubectl get -o wide`."""

from __future__ import annotations

import json
import subprocess

import pytest
from conftest import new_name
from helpers import NS, apply, dump, kubectl, session_yaml, status_of, wait_for

pytestmark = pytest.mark.usefixtures("cluster")


def test_an_h264_session_at_a_low_bitrate_reports_its_codec_bitrate_and_path(
    sessions: list[str],
) -> None:
    name = new_name("h264")
    sessions.append(name)
    spec = {
        "frames": 150,
        "codec": "H264",
        "bitrateKbps": 300,
        "expect": {"maxMeanErrorPx": 1.0, "minMatchedRatio": 0.8},
    }
    result = apply(session_yaml(name, json.dumps(spec)))
    assert result.returncode == 0, result.stderr
    try:
        wait_for(name, "condition=Succeeded", 300)
    except subprocess.CalledProcessError:
        pytest.fail(dump(name))
    status = status_of(name)
    metrics = status["metrics"]
    assert metrics["codec"] == "H264" and metrics["target_bitrate_kbps"] == 300
    # The encoder holds the target: what was sent is near it, not aiortc's default.
    assert 100 <= metrics["measured_bitrate_kbps"] <= 600, metrics
    assert metrics["frames_unreadable"] is not None
    assert status["candidatePair"] == "host/host udp"
    assert metrics["rtt_ms"] is not None and metrics["packet_loss_pct"] is not None
    table = kubectl("-n", NS, "get", "ballsession", name, "-o", "wide").stdout
    print(table)
    header, row = table.strip().splitlines()
    for column in ("CODEC", "KBPS", "ICE PAIR", "RTT (MS)", "LOSS %"):
        assert column in header, header
    assert "H264" in row.split() and "host/host" in row.split()
