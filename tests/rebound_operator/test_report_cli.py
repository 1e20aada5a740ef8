"""`python -m rebound_operator.report` / `kubectl rebound report` against the emulated API
server: it renders only a series the session's own server ConfigMap holds, checked as
untrusted input, and says in one line why not otherwise."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kube_harness import Emulator
from kubernetes import client

NS = "reports"
GROUP, VERSION, PLURAL = "rebound.dev", "v1alpha1", "ballsessions"


@pytest.fixture(scope="module")
def emulator() -> Iterator[Emulator]:
    emulated = Emulator(NS)
    try:
        yield emulated
    finally:
        emulated.close()


@pytest.fixture(scope="module")
def kubeconfig(emulator: Emulator, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return emulator.write_kubeconfig(tmp_path_factory.mktemp("kube") / "config")


def session(emulator: Emulator, name: str) -> str:
    body = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "BallSession",
        "metadata": {"name": name, "namespace": NS},
        "spec": {"frames": 30},
    }
    custom = client.CustomObjectsApi(emulator.api)
    custom.create_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, body)
    found = custom.get_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, name)
    return str(found["metadata"]["uid"])


def server_configmap(emulator: Emulator, name: str, owner_uid: str | None, **data: str) -> None:
    meta: dict[str, Any] = {"name": f"{name}-server-signaling", "namespace": NS}
    if owner_uid:
        meta["ownerReferences"] = [
            {
                "apiVersion": f"{GROUP}/{VERSION}",
                "kind": "BallSession",
                "name": name,
                "uid": owner_uid,
                "controller": True,
            }
        ]
    client.CoreV1Api(emulator.api).create_namespaced_config_map(
        NS, {"metadata": meta, "data": data}
    )


def report(
    kubeconfig: Path, *args: str, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "rebound_operator.report", *args],
        env={**os.environ, "KUBECONFIG": str(kubeconfig)},
        capture_output=True,
        text=True,
        timeout=60,
        cwd=cwd,
    )


def one_error(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 1, result
    (line,) = result.stderr.splitlines()
    assert line.startswith("python -m rebound_operator.report: error: "), line
    return line


def test_no_such_session(kubeconfig: Path) -> None:
    assert "BallSession reports/ghost not found" in one_error(report(kubeconfig, "ghost"))


def test_a_session_without_its_server_configmap(emulator: Emulator, kubeconfig: Path) -> None:
    session(emulator, "early")
    line = one_error(report(kubeconfig, "-n", NS, "early"))
    assert "early-server-signaling not found: the session has no server yet" in line


def test_a_configmap_of_that_name_that_is_not_the_sessions_is_refused(
    emulator: Emulator, kubeconfig: Path
) -> None:
    session(emulator, "forged")
    server_configmap(emulator, "forged", None, series='{"type":"session"}')
    line = one_error(report(kubeconfig, "forged"))
    assert "reports/forged-server-signaling is not BallSession forged's" in line


def test_a_session_whose_server_stored_nothing_yet(emulator: Emulator, kubeconfig: Path) -> None:
    uid = session(emulator, "running")
    server_configmap(emulator, "running", uid, offer="sdp")
    line = one_error(report(kubeconfig, "running"))
    assert "BallSession reports/running (Pending) has no series yet" in line


def test_a_malformed_series_is_refused_with_the_reason(
    emulator: Emulator, kubeconfig: Path, tmp_path: Path
) -> None:
    uid = session(emulator, "broken")
    server_configmap(emulator, "broken", uid, series='{"type":"session"}\nnot json\n')
    line = one_error(report(kubeconfig, "broken", cwd=tmp_path))
    assert "the series of BallSession reports/broken is unusable: invalid lines:" in line
    assert not list(tmp_path.iterdir())  # nothing written


def test_the_kubectl_plugin_needs_the_report_command(kubeconfig: Path) -> None:
    result = report(kubeconfig, "--kubectl-plugin", "show", "x")
    assert result.returncode == 2
    assert result.stderr.startswith("kubectl rebound: error: unknown command 'show'")
    result = report(kubeconfig, "--kubectl-plugin", "report", "ghost")
    assert result.returncode == 1
    assert result.stderr.startswith("kubectl rebound report: error: BallSession")


def test_a_stored_series_becomes_the_html_report(
    emulator: Emulator, kubeconfig: Path, tmp_path: Path
) -> None:
    pytest.importorskip("matplotlib", reason="the report extra (matplotlib) is not installed")
    from peers import series
    from peers.config import SUMMARY_KEYS, SessionSpec
    from peers.series_store import DecimatedSeries

    store = DecimatedSeries(capacity=64)
    store.write(series.session_line(SessionSpec(frames=300, width=320, height=240, radius=12)))
    store.write("\n")
    for i in range(300):
        matched = i % 10 != 3
        record = series.FrameRecord(
            i,
            i / 30,
            60.0 + i % 100,
            80.0,
            60.01 + i % 100 if matched else None,
            80.0 if matched else None,
            0.01 + (i % 7) / 1000 if matched else None,
            37.0 if matched else None,
            series.MATCHED if matched else series.DROPPED,
        )
        store.write(series.frame_line(record) + "\n")
    store.write(series.summary_line({key: 1 for key in SUMMARY_KEYS}) + "\n")
    text = store.configmap_text()
    assert text is not None
    uid = session(emulator, "done")
    server_configmap(emulator, "done", uid, series=text, summary="{}")
    out = tmp_path / "r.html"
    result = report(
        kubeconfig,
        "--kubectl-plugin",
        "report",
        "done",
        "-o",
        str(out),
        "--jsonl",
        str(tmp_path / "s.jsonl"),
    )
    assert result.returncode == 0, result.stderr
    kept = len(series.read_series_text(text).frames)
    assert result.stdout == f"wrote {out} ({kept} of 300 frames)\n"
    html = out.read_text()
    assert html.startswith("<!DOCTYPE html>") and "BallSession reports/done" in html
    assert html.count("data:image/png;base64,") >= 4  # the plots, inline
    assert "http://" not in html and "https://" not in html
    assert (tmp_path / "s.jsonl").read_text() == text
