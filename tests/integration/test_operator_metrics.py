"""The operator's /metrics, scraped while real sessions run: the real operator process against
the emulated API server, the fake kubelet running the real peers (see test_operator_story)."""

from __future__ import annotations

import urllib.request
from collections.abc import Iterable

from kube_harness import wait_for
from loopback import free_port
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample
from test_operator_story import SMALL, Stage
from test_operator_story import bare_stage as bare_stage  # the fixture


def scrape(port: int) -> list[Sample]:
    """Every sample the operator's /metrics serves right now."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    return [s for family in text_string_to_metric_families(text) for s in family.samples]


def value(samples: Iterable[Sample], name: str, **labels: str) -> float:
    """The sample's value, 0 if the operator has not exported it (yet)."""
    for s in samples:
        if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
            return float(s.value)
    return 0.0


def test_metrics_follow_sessions_and_a_restart_counts_nothing_twice(bare_stage: Stage) -> None:
    stage = bare_stage
    port = free_port()
    stage.start_operator(liveness=f"http://127.0.0.1:{port}/healthz")
    wait_for(lambda: _answers(port), 30, what="the operator's /metrics")

    stage.create("watched", frames=0, durationSeconds=0, activeDeadlineSeconds=0, **SMALL)
    stage.create("short", frames=60, **SMALL)
    stage.create("strict", frames=45, maxMeanErrorPx=0.000001, **SMALL)
    stage.wait_phase("watched", {"Connected"}, timeout=90)
    live = wait_for(
        lambda: (s := scrape(port)) and value(s, "rebound_sessions", phase="Connected") >= 1 and s,
        30,
        what="the running session in rebound_sessions{phase=Connected}",
    )
    assert value(live, "rebound_reconciles_total") > 0
    assert value(live, "rebound_api_requests_total", verb="create", resource="pods") > 0
    assert (
        value(
            live,
            "rebound_api_request_duration_seconds_count",
            verb="patch",
            resource="ballsessions/status",
        )
        > 0
    )

    assert stage.wait_phase("short", {"Succeeded", "Failed"}, 90)["phase"] == "Succeeded"
    assert stage.wait_phase("strict", {"Succeeded", "Failed"}, 90)["reason"] == "ErrorTooHigh"
    done = wait_for(
        lambda: (
            (s := scrape(port))
            and value(s, "rebound_sessions", phase="Failed") == 1
            and value(s, "rebound_sessions", phase="Succeeded") == 1
            and s
        ),
        30,
        what="both finished sessions in rebound_sessions",
    )
    finished = "rebound_sessions_finished_total"
    assert value(done, finished, phase="Succeeded", reason="Completed") == 1
    assert value(done, finished, phase="Failed", reason="ErrorTooHigh") == 1
    assert value(done, "rebound_sessions", phase="Connected") == 1  # still streaming
    status = stage.status("short")
    mean = status["metrics"]["mean_error_px"]
    assert value(done, "rebound_session_mean_error_px_count", phase="Succeeded") == 1
    assert value(done, "rebound_session_mean_error_px_sum", phase="Succeeded") == mean
    assert value(done, "rebound_session_fps_count", phase="Succeeded") == 1
    assert value(done, "rebound_session_duration_seconds_count", phase="Failed") == 1

    # A restarted operator sees the same sessions but writes no transition: nothing is
    # counted again, and the gauge is rebuilt from what the API server holds.
    stage.kill_operator()
    stage.start_operator(liveness=f"http://127.0.0.1:{port}/healthz")
    after = wait_for(
        lambda: (
            _answers(port)
            and (s := scrape(port))
            and value(s, "rebound_sessions", phase="Connected") == 1
            and value(s, "rebound_sessions", phase="Succeeded") == 1
            and s
        ),
        60,
        what="the restarted operator to see every session again",
    )
    assert value(after, "rebound_sessions", phase="Failed") == 1
    assert value(after, finished, phase="Succeeded", reason="Completed") == 0
    assert value(after, finished, phase="Failed", reason="ErrorTooHigh") == 0
    assert value(after, "rebound_session_mean_error_px_count", phase="Succeeded") == 0

    # Ending the last one is counted by the operator that writes it; deleting sessions
    # takes them out of the gauge.
    stage.kubelet.kill("watched-client")
    stage.wait_phase("watched", {"Failed"}, timeout=30)
    wait_for(
        lambda: value(scrape(port), finished, phase="Failed", reason="PodFailed") == 1,
        30,
        what="the PodFailed session to be counted once",
    )
    for name in ("watched", "short", "strict"):
        stage.custom.delete_namespaced_custom_object(
            "rebound.dev", "v1alpha1", "rebound-test", "ballsessions", name
        )
    wait_for(
        lambda: (
            sum(
                value(scrape(port), "rebound_sessions", phase=p)
                for p in ("Failed", "Succeeded", "Connected")
            )
            == 0
        ),
        30,
        what="deleted sessions to leave rebound_sessions",
    )


def _answers(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as response:
            return response.status == 200
    except OSError:
        return False
