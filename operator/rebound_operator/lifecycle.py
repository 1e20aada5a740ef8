"""The BallSession state machine: observed children in, phase + conditions + metrics out.

Pure: no Kubernetes client, no clock. The handlers gather an `Observation` and patch the
status this module returns. Phases summarise the conditions (Kubernetes API conventions):

    Pending -> Signaling -> Connected -> Succeeded | Failed

Condition types: Signaled (offer and answer exchanged), Connected (the server is streaming
and publishing metrics), Succeeded, Failed. Every path out of a pod problem, a timeout or a
bad result ends Failed with a CamelCase reason and a message naming the cause.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from peers.metrics import SUMMARY_KEYS
from rebound_operator.spec import BallSessionSpec

PENDING, SIGNALING, CONNECTED, SUCCEEDED, FAILED = (
    "Pending",
    "Signaling",
    "Connected",
    "Succeeded",
    "Failed",
)
TERMINAL = frozenset({SUCCEEDED, FAILED})
CONDITION_TYPES = ("Signaled", "Connected", "Succeeded", "Failed")

IMAGE_PULL_REASONS = frozenset({"ErrImagePull", "ImagePullBackOff", "InvalidImageName"})
START_FAILURE_REASONS = frozenset(
    {"CreateContainerConfigError", "CreateContainerError", "RunContainerError", "CrashLoopBackOff"}
)
EXIT_TIMEOUT = 3
"""Peers exit 3 when the other peer never showed up (docs/CONTRACTS.md)."""
CLIENT_FINISH_GRACE = timedelta(seconds=30)


def format_time(moment: datetime) -> str:
    """RFC 3339 in UTC with a Z, as Kubernetes writes times."""
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(text: str | None) -> datetime | None:
    """A Kubernetes timestamp, or None."""
    if not text:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None


@dataclass(frozen=True)
class PodView:
    """What the state machine needs to know about one peer pod."""

    name: str
    phase: str = "Pending"
    exit_code: int | None = None
    reason: str | None = None
    waiting_reason: str | None = None
    message: str | None = None
    started: bool = False
    finished_at: datetime | None = None

    @classmethod
    def from_manifest(cls, pod: dict[str, Any]) -> PodView:
        """Summarise a Pod object (as returned by the API)."""
        status = pod.get("status") or {}
        name = str((pod.get("metadata") or {}).get("name", "?"))
        view = cls(
            name=name,
            phase=str(status.get("phase") or "Pending"),
            reason=status.get("reason"),
            message=status.get("message"),
        )
        for container in status.get("containerStatuses") or []:
            state = container.get("state") or {}
            if "terminated" in state:
                term = state["terminated"] or {}
                return cls(
                    name=name,
                    phase=view.phase,
                    exit_code=term.get("exitCode"),
                    reason=term.get("reason") or view.reason,
                    message=term.get("message") or view.message,
                    started=True,
                    finished_at=parse_time(term.get("finishedAt")),
                )
            if "running" in state:
                return cls(name=name, phase=view.phase, started=True)
            if "waiting" in state:
                waiting = state["waiting"] or {}
                return cls(
                    name=name,
                    phase=view.phase,
                    waiting_reason=waiting.get("reason"),
                    message=waiting.get("message") or view.message,
                )
        return view

    @property
    def failed(self) -> bool:
        """The pod ended unsuccessfully."""
        return self.phase == "Failed" or (self.exit_code is not None and self.exit_code != 0)

    @property
    def succeeded(self) -> bool:
        """The pod ran to completion with exit code 0."""
        return self.phase == "Succeeded" and not self.failed


@dataclass(frozen=True)
class Observation:
    """Everything observed about one session at one moment."""

    now: datetime
    start: datetime
    server: PodView | None
    client: PodView | None
    signaling: dict[str, str] | None
    pending_timeout: timedelta = timedelta(minutes=5)


@dataclass(frozen=True)
class Event:
    """A Kubernetes Event to post on the BallSession."""

    type: str
    reason: str
    message: str


@dataclass
class Verdict:
    """The status to write, the events to post, and running pods to stop."""

    status: dict[str, Any]
    events: list[Event] = field(default_factory=list)
    stop_pods: list[str] = field(default_factory=list)

    @property
    def phase(self) -> str:
        """The new phase."""
        return str(self.status.get("phase", PENDING))


def _number(value: Any, integer: bool) -> bool:
    if value is None:
        return True
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    return (not integer or isinstance(value, int)) and math.isfinite(value)


_INTEGER_KEYS = frozenset(
    {"frames_sent", "coordinates_received", "frames_matched", "frames_dropped_by_client"}
)


def parse_metrics(text: str | None) -> dict[str, Any] | None:
    """The peers' summary JSON as a dict of exactly SUMMARY_KEYS; None if absent or malformed."""
    if not text:
        return None
    try:
        raw = json.loads(text)
    except ValueError:
        return None
    if not isinstance(raw, dict) or set(raw) != set(SUMMARY_KEYS):
        return None
    if not all(_number(raw[key], key in _INTEGER_KEYS) for key in SUMMARY_KEYS):
        return None
    return {key: raw[key] for key in SUMMARY_KEYS}


def _pod_failure(pod: PodView, role: str, obs: Observation) -> tuple[str, str] | None:
    if pod.waiting_reason in IMAGE_PULL_REASONS:
        return "ImagePullFailed", f"{role} pod {pod.name} cannot pull its image: " + (
            pod.message or pod.waiting_reason or ""
        )
    if pod.waiting_reason in START_FAILURE_REASONS:
        return "PodStartFailed", f"{role} pod {pod.name} cannot start: " + (
            pod.message or pod.waiting_reason or ""
        )
    if pod.failed:
        if pod.exit_code == EXIT_TIMEOUT:
            return (
                "SignalingTimeout",
                f"{role} pod {pod.name} gave up: the other peer never connected",
            )
        detail = f"exit code {pod.exit_code}" if pod.exit_code is not None else "no exit code"
        if pod.reason:
            detail += f", {pod.reason}"
        error = (obs.signaling or {}).get("error")
        suffix = f": {error}" if error else ""
        return "PodFailed", f"{role} pod {pod.name} failed ({detail}){suffix}"
    if not pod.started and obs.now - obs.start > obs.pending_timeout:
        minutes = obs.pending_timeout.total_seconds() / 60
        return "PodPendingTooLong", (
            f"{role} pod {pod.name} has not started after {minutes:g} min"
            + (f" ({pod.waiting_reason})" if pod.waiting_reason else "")
        )
    return None


def _failure(spec: BallSessionSpec, obs: Observation) -> tuple[str, str] | None:
    for role, pod in (("server", obs.server), ("client", obs.client)):
        if pod is None:
            return "PodDeleted", f"{role} pod was deleted before the session ended"
        found = _pod_failure(pod, role, obs)
        if found:
            return found
    data = obs.signaling
    if data is None:
        return "SignalingLost", "the signaling ConfigMap was deleted"
    elapsed = (obs.now - obs.start).total_seconds()
    if "answer" not in data and elapsed > spec.signaling_timeout_seconds:
        missing = "answer from the client" if "offer" in data else "offer from the server"
        return "SignalingTimeout", (
            f"no {missing} within signalingTimeoutSeconds={spec.signaling_timeout_seconds}"
        )
    if spec.active_deadline_seconds and elapsed > spec.active_deadline_seconds:
        return "DeadlineExceeded", (
            f"session ran longer than activeDeadlineSeconds={spec.active_deadline_seconds}"
        )
    return None


def _judge_result(spec: BallSessionSpec, metrics: dict[str, Any] | None) -> tuple[str, str, str]:
    """Phase, reason and message for a session whose server completed."""
    if metrics is None:
        return FAILED, "MetricsMissing", "the server pod completed without publishing a summary"
    mean = metrics.get("mean_error_px")
    if mean is None or not metrics.get("frames_matched"):
        sent = metrics.get("frames_sent")
        return FAILED, "NoMeasurements", f"no coordinate matched any of the {sent} frames sent"
    if mean > spec.max_mean_error_px:
        return (
            FAILED,
            "ErrorTooHigh",
            (f"mean error {mean:.4g} px exceeds maxMeanErrorPx {spec.max_mean_error_px:g}"),
        )
    return (
        SUCCEEDED,
        "Completed",
        (
            f"{metrics['frames_matched']}/{metrics['frames_sent']} frames matched, "
            f"mean error {mean:.4g} px, p95 {metrics.get('p95_error_px')} px"
        ),
    )


def _phase(
    spec: BallSessionSpec,
    obs: Observation,
    data: dict[str, str],
    final: dict[str, Any] | None,
    metrics: dict[str, Any] | None,
) -> tuple[str, str, str]:
    server, client = obs.server, obs.client
    if server is not None and server.succeeded:
        # The measurement is complete; what the client does afterwards cannot undo it.
        client_done = client is None or client.succeeded or client.failed
        finished = server.finished_at
        if client_done or (finished is not None and obs.now - finished > CLIENT_FINISH_GRACE):
            return _judge_result(spec, final)
        return CONNECTED, "Finishing", "the server finished; waiting for the client pod to end"
    failure = _failure(spec, obs)
    if failure:
        return FAILED, *failure
    if "answer" in data and metrics is not None:
        return CONNECTED, "Streaming", "the peers are connected and streaming"
    if "answer" in data:
        return SIGNALING, "Connecting", "answer received; the peers are connecting"
    if "offer" in data:
        return SIGNALING, "WaitingForAnswer", "the server offered; waiting for the client's answer"
    if any(p is not None and p.started for p in (server, client)):
        return SIGNALING, "WaitingForOffer", "waiting for the server's offer"
    return PENDING, "PodsPending", "waiting for the peer pods to start"


def _condition(
    kind: str,
    value: str,
    reason: str,
    message: str,
    previous: dict[str, dict[str, Any]],
    now: datetime,
    generation: int | None,
) -> dict[str, Any]:
    before = previous.get(kind) or {}
    unchanged = before.get("status") == value and bool(before.get("lastTransitionTime"))
    return {
        "type": kind,
        "status": value,
        "reason": reason,
        "message": message,
        "lastTransitionTime": before["lastTransitionTime"] if unchanged else format_time(now),
        "observedGeneration": generation,
    }


def evaluate(
    spec: BallSessionSpec,
    obs: Observation,
    previous: dict[str, Any],
    generation: int | None = None,
) -> Verdict:
    """The next status of a session (`previous` is its current status, maybe empty)."""
    old_phase = previous.get("phase")
    if old_phase in TERMINAL:
        return Verdict(status={})  # terminal states are final
    data = obs.signaling or {}
    final = parse_metrics(data.get("summary"))
    metrics = final or parse_metrics(data.get("metrics"))
    server, client = obs.server, obs.client

    phase, reason, message = _phase(spec, obs, data, final, metrics)

    now, generation_ = obs.now, generation
    conds = {str(c.get("type")): c for c in previous.get("conditions") or [] if isinstance(c, dict)}
    signaled = "answer" in data
    terminal = phase in TERMINAL
    connected_now = phase == CONNECTED and metrics is not None

    def cond(kind: str, value: bool | None, why: str, text: str) -> dict[str, Any]:
        status = "Unknown" if value is None else ("True" if value else "False")
        return _condition(kind, status, why, text, conds, now, generation_)

    conditions = [
        cond(
            "Signaled",
            signaled,
            "AnswerReceived"
            if signaled
            else (
                "SignalingTimeout"
                if reason == "SignalingTimeout"
                else ("WaitingForAnswer" if "offer" in data else "WaitingForOffer")
            ),
            "offer and answer exchanged" if signaled else message,
        ),
        cond(
            "Connected",
            connected_now,
            "Streaming" if connected_now else ("SessionEnded" if terminal else "NotConnected"),
            "the server is streaming and publishing metrics"
            if connected_now
            else ("the session has ended" if terminal else "not streaming yet"),
        ),
        cond(
            "Succeeded",
            phase == SUCCEEDED,
            reason if terminal else "Running",
            message if terminal else "the session has not finished",
        ),
        cond(
            "Failed",
            phase == FAILED,
            reason if phase == FAILED else "NoFailure",
            message if phase == FAILED else "no failure observed",
        ),
    ]
    status: dict[str, Any] = {
        "phase": phase,
        "reason": reason,
        "message": message,
        "conditions": conditions,
        "observedGeneration": generation,
    }
    if metrics is not None:
        status["metrics"] = {**metrics, "final": final is not None}
    if terminal:
        status["completionTime"] = format_time(now)

    verdict = Verdict(status=status)
    if phase != old_phase:
        verdict.events.append(
            Event("Warning" if phase == FAILED else "Normal", reason, f"{phase}: {message}")
        )
    if phase == FAILED:
        verdict.stop_pods = [
            p.name for p in (server, client) if p is not None and not (p.succeeded or p.failed)
        ]
    return verdict
