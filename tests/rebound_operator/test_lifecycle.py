import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from rebound_operator.lifecycle import (
    CLIENT_FINISH_GRACE,
    CONDITION_TYPES,
    Observation,
    PodView,
    Signals,
    acknowledge,
    evaluate,
    failed_status,
    format_time,
    image_refusal,
    recorded_spec,
    spec_changed,
    waiting_status,
)
from rebound_operator.metrics import check_metrics, parse_metrics, read_metrics
from rebound_operator.spec import InvalidSpec, parse_spec

T0 = datetime(2026, 11, 24, 12, 0, 0, tzinfo=UTC)
SPEC = parse_spec(
    {"signalingTimeoutSeconds": 30, "activeDeadlineSeconds": 600, "maxMeanErrorPx": 0.5}
)


def summary(**overrides: Any) -> str:
    base = {
        "frames_sent": 300,
        "coordinates_received": 299,
        "frames_matched": 299,
        "frames_dropped_by_client": 0,
        "mean_error_px": 0.02,
        "p95_error_px": 0.05,
        "max_error_px": 0.1,
        "achieved_fps": 30.0,
        "latency_ms_p50": 37.0,
        "latency_ms_p95": 39.0,
    }
    return json.dumps({**base, **overrides})


def running(name: str) -> PodView:
    return PodView(name, "Running", started=True)


def ended(name: str, code: int, at: datetime = T0, reason: str | None = None) -> PodView:
    phase = "Succeeded" if code == 0 else "Failed"
    return PodView(name, phase, exit_code=code, reason=reason, started=True, finished_at=at)


SERVER_KEYS = ("offer", "metrics", "summary", "error")


def signals(data: dict[str, str]) -> Signals:
    """The two ConfigMaps from one flat dict: `answer` and `client_error` are the client's."""
    server = {k: v for k, v in data.items() if k in SERVER_KEYS}
    client = {"answer": data["answer"]} if "answer" in data else {}
    if "client_error" in data:
        client["error"] = data["client_error"]
    return Signals.read(server, client)


def observe(
    seconds: float = 5,
    server: PodView | None = None,
    client: PodView | None = None,
    data: dict[str, str] | None = None,
    **kw: Any,
) -> Observation:
    return Observation(
        now=T0 + timedelta(seconds=seconds),
        start=T0,
        server=server if server is not None else PodView("s-server"),
        client=client if client is not None else PodView("s-client"),
        signals=signals(data or {}),
        **kw,
    )


def phase_of(
    obs: Observation, spec: Any = SPEC, previous: dict[str, Any] | None = None
) -> tuple[str, str]:
    status = evaluate(spec, obs, previous or {}).status
    return status["phase"], status["reason"]


# ---- the happy path ------------------------------------------------------------------


def test_progresses_through_the_phases() -> None:
    assert phase_of(observe()) == ("Pending", "PodsPending")
    live = {"server": running("s-server"), "client": running("s-client")}
    assert phase_of(observe(**live)) == ("Signaling", "WaitingForOffer")
    assert phase_of(observe(**live, data={"offer": "o"})) == ("Signaling", "WaitingForAnswer")
    both = {"offer": "o", "answer": "a"}
    assert phase_of(observe(**live, data=both)) == ("Signaling", "Connecting")
    assert phase_of(observe(**live, data={**both, "metrics": summary()})) == (
        "Connected",
        "Streaming",
    )


def test_succeeds_when_the_server_completes_within_the_threshold() -> None:
    obs = observe(
        server=ended("s-server", 0),
        client=ended("s-client", 0),
        data={"offer": "o", "answer": "a", "summary": summary()},
    )
    verdict = evaluate(SPEC, obs, {"phase": "Connected"})
    status = verdict.status
    assert (status["phase"], status["reason"]) == ("Succeeded", "Completed")
    assert status["metrics"]["final"] is True
    assert status["metrics"]["mean_error_px"] == 0.02
    assert status["completionTime"] == format_time(obs.now)
    conditions = {c["type"]: c["status"] for c in status["conditions"]}
    assert conditions == {
        "Ready": "True",
        "Reconciling": "False",
        "Stalled": "False",
        "PodsReady": "False",
        "Signaled": "True",
        "Connected": "False",
        "Succeeded": "True",
        "Failed": "False",
        "MetricsReadable": "True",
    }
    assert [e.reason for e in verdict.events] == ["Completed"]
    assert verdict.events[0].type == "Normal"
    assert verdict.stop_pods == []


def test_waits_for_the_client_to_finish_then_judges_anyway_after_a_grace() -> None:
    data = {"offer": "o", "answer": "a", "summary": summary()}
    finishing = observe(server=ended("s-server", 0, at=T0), client=running("s-client"), data=data)
    assert phase_of(finishing) == ("Connected", "Finishing")
    late = Observation(
        now=T0 + CLIENT_FINISH_GRACE + timedelta(seconds=1),
        start=T0,
        server=ended("s-server", 0, at=T0),
        client=running("s-client"),
        signals=signals(data),
    )
    assert phase_of(late) == ("Succeeded", "Completed")
    # Job-like: the verdict is final only with every pod ended or being stopped.
    assert evaluate(SPEC, late, {"phase": "Connected"}).stop_pods == ["s-client"]


def test_a_client_failing_after_the_server_completed_does_not_undo_the_result() -> None:
    obs = observe(
        server=ended("s-server", 0),
        client=ended("s-client", 1),
        data={"offer": "o", "answer": "a", "summary": summary()},
    )
    assert phase_of(obs) == ("Succeeded", "Completed")


def test_a_client_pod_deleted_before_the_server_finished_fails_the_session_naming_it() -> None:
    # Found on a real API server: the deleted client's SIGTERM ends both peers gracefully
    # (exit 0, a partial summary), which must not read as a completed session.
    data = {
        "offer": "o",
        "answer": "a",
        "summary": summary(frames_sent=65, coordinates_received=62, frames_matched=62),
    }
    deleted = PodView("s-client", "Running", started=True, deleted_at=T0 - timedelta(seconds=1))
    assert phase_of(observe(server=ended("s-server", 0), client=deleted, data=data)) == (
        "Failed",
        "PodDeleted",
    )
    status = evaluate(SPEC, observe(server=ended("s-server", 0), client=deleted, data=data), {})
    assert "s-client" in status.status["message"]
    gone = observe(server=ended("s-server", 0), client=None, data=data)
    gone = Observation(
        gone.now, gone.start, gone.server, None, gone.signals, pod_names={"client": "s-client"}
    )
    status = evaluate(SPEC, gone, {}).status
    assert (status["phase"], status["reason"]) == ("Failed", "PodDeleted")
    assert status["message"] == "client pod s-client was deleted before the session ended"


def test_a_deletion_counts_from_its_request_not_from_the_end_of_its_grace() -> None:
    pod = {
        "metadata": {
            "name": "s-client",
            "deletionTimestamp": format_time(T0 + timedelta(seconds=10)),
            "deletionGracePeriodSeconds": 10,
        },
        "status": {"phase": "Running"},
    }
    assert PodView.from_manifest(pod).deleted_at == T0


def test_a_pod_deleted_after_the_server_completed_does_not_undo_the_result() -> None:
    data = {"offer": "o", "answer": "a", "summary": summary()}
    later = PodView(
        "s-client",
        "Succeeded",
        exit_code=0,
        started=True,
        finished_at=T0,
        deleted_at=T0 + timedelta(seconds=5),
    )
    assert phase_of(observe(server=ended("s-server", 0), client=later, data=data)) == (
        "Succeeded",
        "Completed",
    )


def test_a_server_that_stops_short_of_its_limit_did_not_complete() -> None:
    data = {"offer": "o", "answer": "a", "summary": summary(frames_sent=100, frames_matched=99)}
    obs = observe(server=ended("s-server", 0), client=ended("s-client", 0), data=data)
    status = evaluate(SPEC, obs, {}).status
    assert (status["phase"], status["reason"]) == ("Failed", "Interrupted")
    assert "100 of 300 frames" in status["message"]
    unlimited = parse_spec({"frames": 0, "durationSeconds": 0, "activeDeadlineSeconds": 0})
    assert phase_of(obs, unlimited) == ("Failed", "Interrupted")
    timed = parse_spec({"frames": 0, "durationSeconds": 10})
    assert phase_of(obs, timed) == ("Succeeded", "Completed")  # a starved server sends fewer


# ---- results that fail -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (
            {"summary": summary(mean_error_px=0.9, p95_error_px=1.5, max_error_px=2.0)},
            "ErrorTooHigh",
        ),
        ({"summary": summary(frames_matched=0, mean_error_px=None)}, "NoMeasurements"),
        ({}, "MetricsMissing"),
        ({"summary": "{not json"}, "MalformedMetrics"),
    ],
)
def test_completed_sessions_can_still_fail(data: dict[str, str], reason: str) -> None:
    obs = observe(
        server=ended("s-server", 0),
        client=ended("s-client", 0),
        data={"offer": "o", "answer": "a", **data},
    )
    assert phase_of(obs) == ("Failed", reason)


# ---- pods that fail ---------------------------------------------------------------------


def test_a_failed_client_fails_the_session_naming_it_and_stops_the_server() -> None:
    obs = observe(
        server=running("s-server"),
        client=ended("s-client", 137, reason="OOMKilled"),
        data={"offer": "o", "answer": "a", "client_error": "client: boom", "error": "not me"},
    )
    verdict = evaluate(SPEC, obs, {"phase": "Connected"})
    assert (verdict.phase, verdict.status["reason"]) == ("Failed", "PodFailed")
    message = verdict.status["message"]
    assert "s-client" in message and "137" in message and "OOMKilled" in message
    assert "client: boom" in message and "not me" not in message  # the failed role's error
    assert verdict.stop_pods == ["s-server"]
    assert verdict.events[0].type == "Warning"


def test_peer_exit_code_3_is_a_signaling_timeout() -> None:
    obs = observe(server=ended("s-server", 3), client=running("s-client"), data={"offer": "o"})
    assert phase_of(obs) == ("Failed", "SignalingTimeout")
    # Waiting for a client that never started is that client's failure to start.
    never = observe(server=ended("s-server", 3), client=PodView("s-client"), data={"offer": "o"})
    status = evaluate(SPEC, never, {}).status
    assert (status["phase"], status["reason"]) == ("Failed", "PodPendingTooLong")
    assert status["message"] == (
        "client pod s-client has not started after 5 s (the server pod s-server gave up "
        "waiting for it)"
    )


@pytest.mark.parametrize(
    ("waiting", "reason"),
    [
        ("ImagePullBackOff", "ImagePullFailed"),
        ("ErrImagePull", "ImagePullFailed"),
        ("CreateContainerConfigError", "PodStartFailed"),
        ("CrashLoopBackOff", "PodStartFailed"),
    ],
)
def test_pods_that_cannot_start_fail_fast(waiting: str, reason: str) -> None:
    stuck = PodView("s-client", "Pending", waiting_reason=waiting, message="no such image")
    status = evaluate(SPEC, observe(server=running("s-server"), client=stuck), {}).status
    assert (status["phase"], status["reason"]) == ("Failed", reason)
    assert "s-client" in status["message"]


def test_a_pod_pending_too_long_fails() -> None:
    obs = observe(
        seconds=301,
        server=running("s-server"),
        data={"offer": "o", "answer": "a"},
        pending_timeout=timedelta(minutes=5),
    )
    assert phase_of(obs, parse_spec({"signalingTimeoutSeconds": 3600})) == (
        "Failed",
        "PodPendingTooLong",
    )


def test_deleted_children_fail_the_session() -> None:
    both = Signals.read({}, {})
    obs = Observation(now=T0, start=T0, server=running("s-server"), client=None, signals=both)
    assert phase_of(obs) == ("Failed", "PodDeleted")
    for server, client, role in (({}, None, "client"), (None, {}, "server")):
        gone = Observation(
            now=T0,
            start=T0,
            server=running("s-server"),
            client=running("s-client"),
            signals=Signals.read(server, client),
        )
        status = evaluate(SPEC, gone, {}).status
        assert (status["phase"], status["reason"]) == ("Failed", "SignalingLost")
        assert f"the {role}'s signaling ConfigMap" in status["message"]


# ---- time-based rules -------------------------------------------------------------------


def test_no_answer_within_the_signaling_timeout() -> None:
    live = {"server": running("s-server"), "client": running("s-client")}
    assert phase_of(observe(29, **live, data={"offer": "o"}))[0] == "Signaling"
    status = evaluate(SPEC, observe(31, **live, data={"offer": "o"}), {}).status
    assert (status["phase"], status["reason"]) == ("Failed", "SignalingTimeout")
    assert "answer from the client" in status["message"]
    signaled = {c["type"]: c for c in status["conditions"]}["Signaled"]
    assert (signaled["status"], signaled["reason"]) == ("False", "SignalingTimeout")


def test_the_active_deadline() -> None:
    live = {
        "server": running("s-server"),
        "client": running("s-client"),
        "data": {"offer": "o", "answer": "a", "metrics": summary()},
    }
    assert phase_of(observe(599, **live))[0] == "Connected"
    assert phase_of(observe(601, **live)) == ("Failed", "DeadlineExceeded")
    unlimited = parse_spec({"frames": 0, "activeDeadlineSeconds": 0})
    assert phase_of(observe(10**6, **live), unlimited)[0] == "Connected"


# ---- conditions, events, terminal states -------------------------------------------------


def test_terminal_states_are_final() -> None:
    obs = observe(server=ended("s-server", 1))
    assert evaluate(SPEC, obs, {"phase": "Succeeded"}).status == {}
    assert evaluate(SPEC, obs, {"phase": "Failed"}).status == {}


def test_conditions_follow_api_conventions_and_keep_transition_times() -> None:
    live = {"server": running("s-server"), "client": running("s-client")}
    first = evaluate(SPEC, observe(1, **live, data={"offer": "o"}), {}, generation=3).status
    assert [c["type"] for c in first["conditions"]] == list(CONDITION_TYPES)
    assert set(CONDITION_TYPES) == {
        "Ready",
        "Reconciling",
        "Stalled",
        "PodsReady",
        "Signaled",
        "Connected",
        "Succeeded",
        "Failed",
        "MetricsReadable",
    }
    for condition in first["conditions"]:
        assert condition["status"] in ("True", "False", "Unknown")
        assert condition["reason"][0].isupper() and " " not in condition["reason"]
        assert condition["observedGeneration"] == 3
        assert condition["lastTransitionTime"] == format_time(T0 + timedelta(seconds=1))
    second = evaluate(SPEC, observe(9, **live, data={"offer": "o", "answer": "a"}), first).status
    times = {c["type"]: c["lastTransitionTime"] for c in second["conditions"]}
    assert times["Signaled"] == format_time(T0 + timedelta(seconds=9))  # False -> True
    assert times["Failed"] == format_time(T0 + timedelta(seconds=1))  # unchanged


def test_events_only_on_phase_changes() -> None:
    live = {"server": running("s-server"), "client": running("s-client")}
    first = evaluate(SPEC, observe(1, **live, data={"offer": "o"}), {})
    assert [e.reason for e in first.events] == ["WaitingForAnswer"]
    again = evaluate(SPEC, observe(2, **live, data={"offer": "o"}), first.status)
    assert again.events == []


def test_live_metrics_are_published_and_malformed_ones_ignored() -> None:
    live = {"server": running("s-server"), "client": running("s-client")}
    ok = evaluate(
        SPEC, observe(**live, data={"offer": "o", "answer": "a", "metrics": summary()}), {}
    ).status
    assert ok["metrics"]["final"] is False
    bad = evaluate(
        SPEC, observe(**live, data={"offer": "o", "answer": "a", "metrics": "garbage"}), {}
    ).status
    assert "metrics" not in bad
    assert bad["phase"] == "Signaling"
    # Once Connected, malformed live metrics never move the phase back (the last good
    # numbers stay in the status: a merge patch without `metrics` keeps them).
    later = evaluate(
        SPEC, observe(**live, data={"offer": "o", "answer": "a", "metrics": "garbage"}), ok
    ).status
    assert (later["phase"], later["reason"]) == ("Connected", "Streaming")
    assert "metrics" not in later


@pytest.mark.parametrize(
    "text",
    [
        None,
        "",
        "[]",
        "{}",
        summary(mean_error_px="0.1"),
        summary(frames_sent=1.5),
        summary(frames_sent=True),
        '{"mean_error_px": NaN}',
    ],
)
def test_parse_metrics_rejects_malformed_summaries(text: str | None) -> None:
    assert parse_metrics(text) is None


def test_parse_metrics_accepts_nulls_where_nothing_was_measured() -> None:
    parsed = parse_metrics(
        summary(
            frames_matched=0,
            mean_error_px=None,
            p95_error_px=None,
            max_error_px=None,
            latency_ms_p50=None,
            latency_ms_p95=None,
            frames_dropped_by_client=None,
        )
    )
    assert parsed is not None and parsed["mean_error_px"] is None


def test_unknown_summary_keys_are_ignored() -> None:
    parsed = parse_metrics(summary(extra=1, note="x" * 100))
    assert parsed is not None and set(parsed) == set(json.loads(summary()))


# ---- pod summaries ---------------------------------------------------------------------


def test_pod_view_from_manifests() -> None:
    terminated = PodView.from_manifest(
        {
            "metadata": {"name": "p"},
            "status": {
                "phase": "Failed",
                "containerStatuses": [
                    {
                        "state": {
                            "terminated": {
                                "exitCode": 137,
                                "reason": "OOMKilled",
                                "finishedAt": "2026-11-24T12:00:05Z",
                            }
                        }
                    }
                ],
            },
        }
    )
    assert terminated.failed and terminated.exit_code == 137 and terminated.reason == "OOMKilled"
    assert terminated.finished_at == T0 + timedelta(seconds=5)
    waiting = PodView.from_manifest(
        {
            "metadata": {"name": "p"},
            "status": {
                "phase": "Pending",
                "containerStatuses": [
                    {"state": {"waiting": {"reason": "ImagePullBackOff", "message": "not found"}}}
                ],
            },
        }
    )
    assert waiting.waiting_reason == "ImagePullBackOff" and not waiting.started
    fresh = PodView.from_manifest({"metadata": {"name": "p"}})
    assert fresh.phase == "Pending" and not fresh.started and not fresh.failed
    ok = PodView.from_manifest(
        {
            "metadata": {"name": "p"},
            "status": {
                "phase": "Succeeded",
                "containerStatuses": [{"state": {"terminated": {"exitCode": 0}}}],
            },
        }
    )
    assert ok.succeeded and not ok.failed


# ---- malformed metrics: ignored, reported once, never a crash ----------------------------


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("{not json", "not JSON"),
        ("[1, 2]", "not a JSON object but list"),
        ('{"frames_sent": 1}', "missing coordinates_received"),
        (summary(mean_error_px="0.1"), "mean_error_px is not a number"),
        (summary(frames_sent=1.5), "frames_sent is not an integer"),
        ('{"mean_error_px": NaN}', "missing frames_sent"),
        (summary().replace('"max_error_px": 0.1', '"max_error_px": Infinity'), "not finite"),
    ],
)
def test_check_metrics_says_what_is_wrong(text: str, problem: str) -> None:
    metrics, why = check_metrics(text)
    assert metrics is None
    assert why is not None and problem in why


def test_a_good_summary_supersedes_malformed_live_metrics() -> None:
    reading = read_metrics(summary(), "garbage")
    assert reading.problem is None and reading.final is not None
    assert reading.live == reading.final
    broken = read_metrics("garbage", summary())
    assert broken.final is None and broken.live is not None  # live numbers still shown
    assert broken.problem is not None and broken.problem.startswith("data.summary: not JSON")


def test_malformed_metrics_set_a_condition_and_warn_once() -> None:
    live = {"server": running("s-server"), "client": running("s-client")}
    data = {"offer": "o", "answer": "a", "metrics": '{"frames_sent": "many"}'}
    first = evaluate(SPEC, observe(3, **live, data=data), {"phase": "Signaling"})
    readable = {c["type"]: c for c in first.status["conditions"]}["MetricsReadable"]
    assert (readable["status"], readable["reason"]) == ("False", "MalformedMetrics")
    assert "data.metrics: missing" in readable["message"]
    assert [(e.type, e.reason) for e in first.events] == [("Warning", "MalformedMetrics")]
    again = evaluate(SPEC, observe(4, **live, data=data), first.status)
    assert again.events == []  # one warning per transition, not per reconcile
    fixed = evaluate(SPEC, observe(5, **live, data={**data, "metrics": summary()}), again.status)
    readable = {c["type"]: c for c in fixed.status["conditions"]}["MetricsReadable"]
    assert (readable["status"], readable["reason"]) == ("True", "MetricsPublished")
    assert fixed.phase == "Connected"


def test_a_malformed_summary_fails_a_completed_session_saying_why() -> None:
    obs = observe(
        server=ended("s-server", 0),
        client=ended("s-client", 0),
        data={"offer": "o", "answer": "a", "summary": "[]"},
    )
    status = evaluate(SPEC, obs, {"phase": "Connected"}).status
    assert (status["phase"], status["reason"]) == ("Failed", "MalformedMetrics")
    assert "data.summary: not a JSON object" in status["message"]


# ---- PodsReady ----------------------------------------------------------------------------


def test_pods_ready_tells_why_pods_are_not_running() -> None:
    def ready(obs: Observation) -> tuple[str, str]:
        condition = {c["type"]: c for c in evaluate(SPEC, obs, {}).status["conditions"]}
        return condition["PodsReady"]["status"], condition["PodsReady"]["reason"]

    assert ready(observe()) == ("False", "PodsPending")
    creating = PodView("s-client", waiting_reason="ContainerCreating")
    assert ready(observe(server=running("s-server"), client=creating)) == (
        "False",
        "ContainerCreating",
    )
    assert ready(observe(server=running("s-server"), client=running("s-client"))) == (
        "True",
        "PodsRunning",
    )


# ---- failures before any pod ran ------------------------------------------------------------


def test_failed_status_sets_every_condition() -> None:
    status = failed_status("InvalidSpec", "spec.fps: too fast", T0, generation=2)
    assert (status["phase"], status["reason"]) == ("Failed", "InvalidSpec")
    assert status["startTime"] == status["completionTime"] == format_time(T0)
    conditions = {c["type"]: c for c in status["conditions"]}
    assert list(conditions) == list(CONDITION_TYPES)
    assert conditions["Failed"]["status"] == "True"
    assert conditions["Succeeded"]["status"] == "False"
    assert conditions["MetricsReadable"]["status"] == "Unknown"
    assert conditions["Stalled"]["status"] == "True"
    assert conditions["Ready"]["status"] == conditions["Reconciling"]["status"] == "False"
    assert all(c["observedGeneration"] == 2 for c in conditions.values())


# ---- when to look again ---------------------------------------------------------------------


def test_wake_at_names_the_next_time_based_rule() -> None:
    spec = parse_spec({"signalingTimeoutSeconds": 30, "activeDeadlineSeconds": 600})
    pending = evaluate(spec, observe(1, pending_timeout=timedelta(seconds=20)), {})
    assert pending.wake_at == T0 + timedelta(seconds=20)  # pods pending: earliest rule
    live = {"server": running("s-server"), "client": running("s-client")}
    signaling = evaluate(spec, observe(1, **live, data={"offer": "o"}), {})
    assert signaling.wake_at == T0 + timedelta(seconds=30)
    streaming = evaluate(
        spec, observe(40, **live, data={"offer": "o", "answer": "a", "metrics": summary()}), {}
    )
    assert streaming.wake_at == T0 + timedelta(seconds=600)
    finishing = evaluate(
        spec,
        observe(
            45,
            server=ended("s-server", 0, at=T0 + timedelta(seconds=44)),
            client=running("s-client"),
            data={"offer": "o", "answer": "a"},
        ),
        {},
    )
    assert finishing.wake_at == T0 + timedelta(seconds=44) + CLIENT_FINISH_GRACE


def test_unlimited_connected_sessions_need_no_wake_up_and_terminal_ones_none() -> None:
    unlimited = parse_spec({"frames": 0, "activeDeadlineSeconds": 0})
    live = {"server": running("s-server"), "client": running("s-client")}
    obs = observe(5, **live, data={"offer": "o", "answer": "a", "metrics": summary()})
    assert evaluate(unlimited, obs, {}).wake_at is None
    done = observe(server=ended("s-server", 1), client=running("s-client"))
    assert evaluate(SPEC, done, {}).wake_at is None


# ---- untrusted peers: nothing they write can wedge, bloat or forge a result (issue 8) ----


def streaming(**data: str) -> dict[str, Any]:
    return {
        "server": running("s-server"),
        "client": running("s-client"),
        "data": {"offer": "o", "answer": "a", **data},
    }


def test_a_recursion_bomb_never_raises_and_the_deadline_still_fires() -> None:
    bomb = "[" * 100_000
    for text in (bomb, "[" * 4000):
        live = streaming(metrics=summary(), summary=text)
        verdict = evaluate(SPEC, observe(10, **live), {"phase": "Connected"})
        readable = {c["type"]: c for c in verdict.status["conditions"]}["MetricsReadable"]
        assert readable["reason"] == "MalformedMetrics"
        assert verdict.wake_at == T0 + timedelta(seconds=600)  # the deadline is still armed
        late = evaluate(SPEC, observe(601, **live), verdict.status)
        assert (late.phase, late.status["reason"]) == ("Failed", "DeadlineExceeded")
    done = observe(server=ended("s-server", 0), client=ended("s-client", 0), data={"summary": bomb})
    assert phase_of(done, previous={"phase": "Connected"}) == ("Failed", "MalformedMetrics")


def test_huge_peer_and_kubelet_text_is_cut_to_one_short_line() -> None:
    huge_error = "e" * 600_000 + "\n" + "second line"
    oom = PodView.from_manifest(
        {
            "metadata": {"name": "s-client", "uid": "u1"},
            "status": {
                "phase": "Failed",
                "containerStatuses": [
                    {"state": {"terminated": {"exitCode": 1, "message": "m" * 100_000}}}
                ],
            },
        }
    )
    assert oom.message is not None and len(oom.message) <= 256
    obs = observe(
        server=running("s-server"),
        client=oom,
        data={"offer": "o", "answer": "a", "client_error": huge_error},
    )
    verdict = evaluate(SPEC, obs, {"phase": "Connected"})
    assert verdict.status["reason"] == "PodFailed"
    assert len(json.dumps(verdict.status)) < 16_000
    for message in [verdict.status["message"]] + [e.message for e in verdict.events]:
        assert len(message) <= 1024 and "\n" not in message
    bloated = summary(extra="x" * 450_000)
    obs = observe(
        server=ended("s-server", 0), client=ended("s-client", 0), data={"summary": bloated}
    )
    verdict = evaluate(SPEC, obs, {"phase": "Connected"})
    assert (verdict.phase, verdict.status["reason"]) == ("Failed", "MalformedMetrics")
    assert "too large" in verdict.status["message"]
    assert len(json.dumps(verdict.status)) < 16_000


@pytest.mark.parametrize(
    "bad",
    [
        summary(mean_error_px=-5.0, p95_error_px=-5.0, max_error_px=-5.0),
        summary(frames_matched=5000, frames_sent=-1),
        summary(frames_matched=5000, coordinates_received=5000),
        summary(frames_dropped_by_client=int("9" * 401)),
        summary(mean_error_px=float("nan")),
    ],
)
def test_an_implausible_summary_never_succeeds(bad: str) -> None:
    obs = observe(server=ended("s-server", 0), client=ended("s-client", 0), data={"summary": bad})
    verdict = evaluate(SPEC, obs, {"phase": "Connected"})
    assert (verdict.phase, verdict.status["reason"]) == ("Failed", "MalformedMetrics")
    assert "metrics" not in verdict.status or verdict.status["metrics"]["final"] is False


def test_the_client_cannot_forge_the_server_keys() -> None:
    # The client writes a perfect summary and an offer into its own ConfigMap: ignored.
    forged = Signals.read({}, {"answer": "a", "summary": summary(), "offer": "o"})
    assert forged.summary is None and not forged.offer
    obs = Observation(
        now=T0, start=T0, server=ended("s-server", 0), client=ended("s-client", 0), signals=forged
    )
    assert phase_of(obs) == ("Failed", "MetricsMissing")
    # ... and the server cannot answer for the client.
    assert not Signals.read({"answer": "a"}, {}).answer


def test_pending_too_long_speaks_in_seconds() -> None:
    obs = observe(seconds=11, pending_timeout=timedelta(seconds=10))
    status = evaluate(SPEC, obs, {}).status
    assert status["reason"] == "PodPendingTooLong"
    assert "has not started after 10 s" in status["message"]


def test_a_missing_secret_reads_clearly() -> None:
    stuck = PodView(
        "s-server",
        waiting_reason="CreateContainerConfigError",
        message='secret "turn" not found',
    )
    status = evaluate(SPEC, observe(server=stuck), {}).status
    assert (status["phase"], status["reason"]) == ("Failed", "PodStartFailed")
    assert status["message"] == (
        'server pod s-server cannot start (CreateContainerConfigError): secret "turn" not found'
    )


# ---- phases never move backwards; kstatus conditions -----------------------------------------


@pytest.mark.parametrize(
    ("old", "data", "expected"),
    [
        ("Connected", {"metrics": "garbage"}, "Connected"),
        ("Connected", {}, "Connected"),
        ("Signaling", {}, "Signaling"),
    ],
)
def test_the_phase_never_moves_backwards(old: str, data: dict[str, str], expected: str) -> None:
    obs = observe(server=PodView("s-server"), client=PodView("s-client"), data=data)
    previous = {"phase": old, "reason": "Before", "message": "as before"}
    assert evaluate(SPEC, obs, previous).phase == expected


@pytest.mark.parametrize(
    ("obs", "previous", "ready", "reconciling", "stalled"),
    [
        (observe(), {}, "False", "True", "False"),
        (observe(**streaming(metrics=summary())), {}, "False", "True", "False"),
        (
            observe(
                server=ended("s-server", 0),
                client=ended("s-client", 0),
                data={"summary": summary()},
            ),
            {"phase": "Connected"},
            "True",
            "False",
            "False",
        ),
        (observe(server=ended("s-server", 1)), {}, "False", "False", "True"),
    ],
)
def test_kstatus_conditions(
    obs: Observation, previous: dict[str, Any], ready: str, reconciling: str, stalled: str
) -> None:
    status = evaluate(SPEC, obs, previous, generation=4).status
    conditions = {c["type"]: c for c in status["conditions"]}
    assert (
        conditions["Ready"]["status"],
        conditions["Reconciling"]["status"],
        conditions["Stalled"]["status"],
    ) == (ready, reconciling, stalled)
    for kind in ("Ready", "Reconciling", "Stalled"):
        assert conditions[kind]["reason"] == status["reason"]
        assert conditions[kind]["observedGeneration"] == 4
    assert status["observedGeneration"] == 4


# ---- the spec a session is judged by; image policy ----------------------------------------


def test_the_recorded_spec_wins_and_an_edit_is_reported() -> None:
    recorded = parse_spec({"maxMeanErrorPx": 0.5})
    assert recorded_spec({"sessionSpec": recorded.record()}) == recorded
    assert recorded_spec({}) is None
    with pytest.raises(InvalidSpec, match=r"^status\.sessionSpec\.fps"):
        recorded_spec({"sessionSpec": {"fps": 0}})
    assert spec_changed(recorded, {"maxMeanErrorPx": 0.5}, 1) is None
    event = spec_changed(recorded, {"maxMeanErrorPx": 100}, 2)
    assert event is not None and (event.type, event.reason) == ("Warning", "SpecChanged")
    assert "generation 2" in event.message
    assert spec_changed(recorded, {"fps": "fast"}, 3) is not None  # an invalid edit too


@pytest.mark.parametrize(
    ("image", "allowed", "refused"),
    [
        ("", [], False),
        ("peer:1", [], False),
        ("evil/miner:latest", [], True),
        ("registry.example/rebound-peer:0.2.0", ["registry.example/rebound-peer:*"], False),
        ("registry.example/other:0.2.0", ["registry.example/rebound-peer:*"], True),
        ("peer:1@sha256:abc", ["peer:1"], True),
    ],
)
def test_image_policy(image: str, allowed: list[str], refused: bool) -> None:
    spec = parse_spec({"image": image})
    result = image_refusal(spec, "peer:1", allowed)
    assert (result is not None) == refused
    if result:
        assert result[0] == "ImageNotAllowed" and image in result[1]


def test_acknowledge_moves_only_the_observed_generation() -> None:
    done = failed_status("PodFailed", "x", T0, generation=1)
    patch = acknowledge(done, 2)
    assert patch["observedGeneration"] == 2
    assert [c["observedGeneration"] for c in patch["conditions"]] == [2] * len(CONDITION_TYPES)
    assert [c["status"] for c in patch["conditions"]] == [c["status"] for c in done["conditions"]]


def test_waiting_status_is_pending_and_reconciling() -> None:
    status = waiting_status("ConfigMap x still belongs to a deleted BallSession", T0)
    conditions = {c["type"]: c["status"] for c in status["conditions"]}
    assert (status["phase"], status["reason"]) == ("Pending", "WaitingForCleanup")
    assert conditions["Reconciling"] == "True" and conditions["Stalled"] == "False"
    assert status["startTime"] == format_time(T0)


# ---- a session that waits for room: pending names the scheduler, signaling waits for both ----

NO_ROOM = "0/1 nodes are available: 1 Insufficient cpu."


def unschedulable(name: str, message: str = NO_ROOM) -> PodView:
    return PodView(name, "Pending", unschedulable=message)


def started(name: str, after: float) -> PodView:
    return PodView(name, "Running", started=True, started_at=T0 + timedelta(seconds=after))


def test_pod_view_reads_the_schedulers_verdict_and_the_start_time() -> None:
    pending = PodView.from_manifest(
        {
            "metadata": {"name": "p"},
            "status": {
                "phase": "Pending",
                "conditions": [
                    {
                        "type": "PodScheduled",
                        "status": "False",
                        "reason": "Unschedulable",
                        "message": NO_ROOM + "\n preemption: " + "x" * 10_000,
                    },
                ],
            },
        }
    )
    assert pending.unschedulable is not None and pending.unschedulable.startswith(NO_ROOM)
    assert len(pending.unschedulable) <= 256 and "\n" not in pending.unschedulable
    gated = PodView.from_manifest(
        {
            "metadata": {"name": "p"},
            "status": {
                "conditions": [
                    {"type": "PodScheduled", "status": "False", "reason": "SchedulingGated"}
                ]
            },
        }
    )
    assert gated.unschedulable is None  # waiting on purpose, not for room
    scheduled = PodView.from_manifest(
        {
            "metadata": {"name": "p"},
            "status": {
                "phase": "Running",
                "conditions": [{"type": "PodScheduled", "status": "True"}],
                "containerStatuses": [
                    {"state": {"running": {"startedAt": "2026-11-24T12:00:07Z"}}}
                ],
            },
        }
    )
    assert scheduled.unschedulable is None and scheduled.started
    assert scheduled.started_at == T0 + timedelta(seconds=7)


PENDING_60 = parse_spec({"signalingTimeoutSeconds": 30, "pendingTimeoutSeconds": 60})


@pytest.mark.parametrize(
    ("spec", "seconds", "server", "client", "data", "expected"),
    [
        # Queued behind other sessions: long past the signaling timeout, still pending.
        (SPEC, 200, PodView("s-server"), PodView("s-client"), {}, ("Pending", "PodsPending")),
        (
            SPEC,
            200,
            unschedulable("s-server"),
            unschedulable("s-client"),
            {},
            ("Pending", "Unschedulable"),
        ),
        # One peer got room, the other did not: still pending, even with an offer written.
        (
            SPEC,
            200,
            started("s-server", 1),
            unschedulable("s-client"),
            {"offer": "o"},
            ("Pending", "Unschedulable"),
        ),
        # The pending timeout ends it with the scheduler's reason, or the kubelet's.
        (
            SPEC,
            301,
            started("s-server", 1),
            unschedulable("s-client"),
            {},
            ("Failed", "Unschedulable"),
        ),
        (
            SPEC,
            301,
            started("s-server", 1),
            PodView("s-client", waiting_reason="ContainerCreating"),
            {},
            ("Failed", "PodPendingTooLong"),
        ),
        # spec.pendingTimeoutSeconds overrides the operator's --pending-timeout (300 here) ...
        (
            PENDING_60,
            59,
            unschedulable("s-server"),
            PodView("s-client"),
            {},
            ("Pending", "Unschedulable"),
        ),
        (
            PENDING_60,
            61,
            unschedulable("s-server"),
            PodView("s-client"),
            {},
            ("Failed", "Unschedulable"),
        ),
        # ... and 0 means the operator's.
        (
            parse_spec({"pendingTimeoutSeconds": 0}),
            299,
            PodView("s-server"),
            PodView("s-client"),
            {},
            ("Pending", "PodsPending"),
        ),
        # The signaling clock starts when the later peer started (250 s), not at creation.
        (
            SPEC,
            270,
            started("s-server", 10),
            started("s-client", 250),
            {},
            ("Signaling", "WaitingForOffer"),
        ),
        (
            SPEC,
            279,
            started("s-server", 10),
            started("s-client", 250),
            {"offer": "o"},
            ("Signaling", "WaitingForAnswer"),
        ),
        (
            SPEC,
            281,
            started("s-server", 10),
            started("s-client", 250),
            {"offer": "o"},
            ("Failed", "SignalingTimeout"),
        ),
        # A peer that gave up waiting (exit 3) for a peer never placed: the scheduler's fault.
        (
            SPEC,
            200,
            ended("s-server", 3),
            unschedulable("s-client"),
            {},
            ("Failed", "Unschedulable"),
        ),
        (
            SPEC,
            200,
            ended("s-server", 3),
            started("s-client", 150),
            {},
            ("Failed", "SignalingTimeout"),
        ),
    ],
)
def test_pending_and_signaling_clocks(
    spec: Any,
    seconds: float,
    server: PodView,
    client: PodView,
    data: dict[str, str],
    expected: tuple[str, str],
) -> None:
    obs = observe(seconds, server=server, client=client, data=data)
    assert phase_of(obs, spec) == expected


def test_an_unschedulable_session_says_why_in_status_conditions_and_events() -> None:
    obs = observe(200, server=started("s-server", 1), client=unschedulable("s-client"))
    verdict = evaluate(SPEC, obs, {})
    status = verdict.status
    assert (status["phase"], status["reason"]) == ("Pending", "Unschedulable")
    assert status["message"] == (
        f"client pod s-client cannot be scheduled (waiting up to 300 s): {NO_ROOM}"
    )
    conditions = {c["type"]: c for c in status["conditions"]}
    assert (conditions["PodsReady"]["status"], conditions["PodsReady"]["reason"]) == (
        "False",
        "Unschedulable",
    )
    assert NO_ROOM in conditions["PodsReady"]["message"]
    assert conditions["Reconciling"]["status"] == "True"  # kstatus: in progress, not stalled
    assert conditions["Stalled"]["status"] == "False"
    assert conditions["Signaled"]["reason"] == "WaitingForOffer"
    assert [(e.type, e.reason) for e in verdict.events] == [("Warning", "Unschedulable")]
    assert NO_ROOM in verdict.events[0].message
    # Told once; again only when the scheduler's words change.
    assert evaluate(SPEC, obs, status).events == []
    busier = observe(
        210,
        server=started("s-server", 1),
        client=unschedulable("s-client", "0/1 nodes are available: 1 Insufficient memory."),
    )
    again = evaluate(SPEC, busier, status)
    assert [e.reason for e in again.events] == ["Unschedulable"]
    assert "Insufficient memory" in again.events[0].message
    # The pending timeout ends it, quoting the scheduler.
    late = evaluate(SPEC, observe(301, server=started("s-server", 1), client=obs.client), status)
    assert (late.phase, late.status["reason"]) == ("Failed", "Unschedulable")
    assert late.status["message"] == (
        f"client pod s-client could not be scheduled within 300 s: {NO_ROOM}"
    )
    assert late.stop_pods == ["s-server", "s-client"]


def test_the_clocks_wake_the_session_at_the_right_moments() -> None:
    pending = evaluate(PENDING_60, observe(5, client=unschedulable("s-client")), {})
    assert pending.wake_at == T0 + timedelta(seconds=60)  # no signaling clock yet
    both = observe(260, server=started("s-server", 10), client=started("s-client", 250))
    assert evaluate(SPEC, both, {}).wake_at == T0 + timedelta(seconds=280)
