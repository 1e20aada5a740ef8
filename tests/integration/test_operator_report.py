"""A BallSession's report for real: the server peer (run by the fake kubelet from the pod the
operator built) stores its series in its own ConfigMap, the operator announces it, and the
report command renders it (see test_operator_story for the stage)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from kube_harness import wait_for
from test_operator_story import NS, SMALL, Stage
from test_operator_story import bare_stage as bare_stage  # the fixture it uses
from test_operator_story import stage as stage  # the fixture

from peers import series


def test_a_finished_session_stores_its_series_and_renders_a_report(
    stage: Stage, tmp_path: Path
) -> None:
    stage.create("seen", frames=90, **SMALL)
    status = stage.wait_phase("seen", {"Succeeded", "Failed"}, timeout=120)
    assert status["phase"] == "Succeeded", status
    configmaps = {m["metadata"]["name"]: m for m in stage.children("seen")["v1/configmaps"]}
    text = configmaps["seen-server-signaling"]["data"]["series"]
    assert "series" not in configmaps["seen-client-signaling"].get("data", {})
    assert len(text.encode()) <= series.CONFIGMAP_BYTES
    stored = series.read_series_text(text)
    assert not stored.bad_lines and stored.spec is not None and stored.spec.frames == 90
    assert len(stored.frames) == 90 and stored.summary is not None
    assert stored.summary["frames_sent"] == status["metrics"]["frames_sent"]
    matched = [f for f in stored.frames if f.outcome == series.MATCHED]
    assert len(matched) == status["metrics"]["frames_matched"]
    assert "series" not in json.dumps(status)  # never copied into the status
    event = wait_for(
        lambda: next((e for e in stage.events("seen") if e.get("reason") == "ReportReady"), None),
        30,
        what="the ReportReady event",
    )
    assert "(90 frames)" in event["message"]

    pytest.importorskip("matplotlib", reason="rendering needs the report extra (matplotlib)")
    out = tmp_path / "seen.html"
    done = subprocess.run(
        [sys.executable, "-m", "rebound_operator.report", "-n", NS, "seen", "-o", str(out)],
        env={**os.environ, "KUBECONFIG": str(stage.kubeconfig)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"wrote {out} (90 of 90 frames)\n"
    assert out.read_text().startswith("<!DOCTYPE html>")
