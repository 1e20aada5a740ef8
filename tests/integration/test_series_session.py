"""A real session with --series: one line per frame sent, consistent with the summary."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from loopback import finish, free_port, peer, start_session

from peers import series
from peers.ball import BallModel


def test_series_has_every_frame_and_agrees_with_the_summary(tmp_path: Path) -> None:
    path = tmp_path / "series.jsonl"
    session = start_session(tmp_path, ["--frames", "90", "--series", str(path), "--seed", "4"])
    server, client = finish(session.server), finish(session.client)
    assert server.code == client.code == 0, server.stderr + client.stderr
    summary = session.summary()
    read = series.read_series(path.read_bytes().splitlines())
    assert read.bad_lines == {}
    assert read.spec is not None and read.spec.frames == 90 and read.spec.seed == 4
    assert [r.frame for r in read.frames] == list(range(90))
    matched = [r for r in read.frames if r.outcome == series.MATCHED]
    assert len(matched) == summary["frames_matched"] >= 85
    model = BallModel(640, 480, 20, 240, 30, seed=4)
    for r in read.frames:
        truth = model.position(r.frame)
        assert abs(r.true_x - truth.x) < 1e-3 and abs(r.true_y - truth.y) < 1e-3
    errors = [r.error_px for r in matched if r.error_px is not None]
    assert max(errors) == summary["max_error_px"]
    assert abs(sum(errors) / len(errors) - summary["mean_error_px"]) < 1e-3
    assert all(r.latency_ms is not None and 0 < r.latency_ms < 2000 for r in matched)
    times = [r.t_s for r in read.frames]
    assert times[0] == 0.0 and times == sorted(times)
    assert times[-1] >= 2.5  # paced at 30 fps: frame 89 leaves no earlier than 2.97 s after
    # the start; t_s counts from frame 0 leaving, after its (first, slowest) render
    assert read.summary == summary


def test_report_from_a_real_session(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setenv("TMPDIR", str(scratch))  # where the server keeps its temporary series
    out = tmp_path / "report.html"
    session = start_session(tmp_path, ["--frames", "60", "--report", str(out)])
    server, client = finish(session.server, 120), finish(session.client)
    assert server.code == client.code == 0, server.stderr + client.stderr
    assert f"report written to {out}" in server.stdout
    html = out.read_text()
    assert html.count('src="data:image/png;base64,') == 5
    assert 'alt="frames as the client received them"' in html  # real received crops
    assert "http:" not in html and "https:" not in html and "<script" not in html
    assert f"<th>frames_sent</th><td>{session.summary()['frames_sent']}</td>" in html
    assert list(scratch.iterdir()) == []  # the temporary series is gone


VARIANTS = [sys.executable, str(Path(__file__).with_name("peer_variants.py"))]


def test_the_client_says_why_frames_brought_no_coordinate(tmp_path: Path) -> None:
    """Frames without a ball and with a spoilt marker (server variant) and frames the client
    dropped (process_a slowed down) carry their outcome in the series."""
    path = tmp_path / "series.jsonl"
    port = str(free_port())
    server = peer("server", "--signaling-port", port, "--frames", "150", "--series", str(path),
                  command=[*VARIANTS, "spoilt-frames", "server"])  # fmt: skip
    client = peer("client", "--signaling-port", port, "--queue-size", "2",
                  command=[*VARIANTS, "slow-process-a", "client"])  # fmt: skip
    done_server, done_client = finish(server, 120), finish(client, 120)
    assert done_server.code == done_client.code == 0, done_server.stderr + done_client.stderr
    read = series.read_series(path.read_bytes().splitlines())
    assert read.bad_lines == {} and len(read.frames) == 150
    by_outcome: dict[str, list[int]] = {}
    for record in read.frames:
        by_outcome.setdefault(record.outcome, []).append(record.frame)
    assert by_outcome.get("no_ball") and all(f % 10 == 5 for f in by_outcome["no_ball"])
    assert by_outcome.get("unreadable") and all(f % 10 == 7 for f in by_outcome["unreadable"])
    assert len(by_outcome.get("dropped", [])) >= 10
    assert not any(f % 10 in (5, 7) for f in by_outcome["matched"])
    summary = read.summary
    assert summary is not None
    assert len(by_outcome["dropped"]) <= summary["client"]["dropped"]
    assert len(by_outcome["no_ball"]) == summary["client"]["no_ball"]
    assert read.samples, "the client sent crops of received frames"
    for sample in read.samples:
        assert by_outcome["matched"].count(sample.frame) == 1
