"""A real session with --series: one line per frame sent, consistent with the summary."""

from __future__ import annotations

from pathlib import Path

import pytest
from loopback import finish, start_session

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
    assert "http:" not in html and "https:" not in html and "<script" not in html
    assert f"<th>frames_sent</th><td>{session.summary()['frames_sent']}</td>" in html
    assert list(scratch.iterdir()) == []  # the temporary series is gone
