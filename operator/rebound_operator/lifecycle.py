"""The BallSession state machine: observed children in, phase + conditions + metrics out.

Pure: no Kubernetes client, no clock. The handlers gather an `Observation`, call `evaluate`,
patch the status it returns, post its events, stop the pods it names and wake up again at
`Verdict.wake_at`. Phases summarise the conditions (Kubernetes API conventions):

    Pending -> Signaling -> Connected -> Succeeded | Failed

Condition types (all set on the first visit, `Unknown` where nothing is known yet):
PodsReady (both peer pods running), Signaled (offer and answer exchanged), Connected (the
server is streaming and publishing metrics), Succeeded, Failed, MetricsReadable (the
ConfigMap's metrics/summary parse; False names the malformed key). Every path out of a pod
problem, a timeout or a bad result ends Failed with a CamelCase reason and a message naming
the cause. Like a Job, a session is terminal only once its pods ended or are being stopped.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from peers.config import SUMMARY_KEYS
from rebound_operator.spec import BallSessionSpec

PENDING, SIGNALING, CONNECTED, SUCCEEDED, FAILED = (
    "Pending",
    "Signaling",
    "Connected",
    "Succeeded",
    "Failed",
)
PHASES = (PENDING, SIGNALING, CONNECTED, SUCCEEDED, FAILED)
TERMINAL = frozenset({SUCCEEDED, FAILED})
CONDITION_TYPES = ("PodsReady", "Signaled", "Connected", "Succeeded", "Failed", "MetricsReadable")

IMAGE_PULL_REASONS = frozenset({"ErrImagePull", "ImagePullBackOff", "InvalidImageName"})
START_FAILURE_REASONS = frozenset(
    {"CreateContainerConfigError", "CreateContainerError", "RunContainerError", "CrashLoopBackOff"}
)
EXIT_TIMEOUT = 3
"""Peers exit 3 when the other peer never showed up (docs/CONTRACTS.md)."""
CLIENT_FINISH_GRACE = timedelta(seconds=30)
"""How long a completed server waits for its client to end before the session is judged."""


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
    def from_manifest(cls, pod: Mapping[str, Any]) -> PodView:
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

    @property
    def ended(self) -> bool:
        """The pod's container is not running any more, for whatever reason."""
        return self.succeeded or self.failed or self.exit_code is not None


@dataclass(frozen=True)
class Observation:
    """Everything observed about one session at one moment."""

    now: datetime
    start: datetime
    server: PodView | None
    client: PodView | None
    signaling: Mapping[str, str] | None
    pending_timeout: timedelta = timedelta(minutes=5)


@dataclass(frozen=True)
class Event:
    """A Kubernetes Event to post on the BallSession."""

    type: str
    reason: str
    message: str


@dataclass
class Verdict:
    """The status to write, the events to post, running pods to stop, and when to look again."""

    status: dict[str, Any]
    events: list[Event] = field(default_factory=list)
    stop_pods: list[str] = field(default_factory=list)
    wake_at: datetime | None = None
    """The next moment a time-based rule can fire (None: only events can change anything)."""

    @property
    def phase(self) -> str:
        """The new phase."""
        return str(self.status.get("phase", PENDING))


# ---- metrics --------------------------------------------------------------------------

_INTEGER_KEYS = frozenset(
    {"frames_sent", "coordinates_received", "frames_matched", "frames_dropped_by_client"}
)


def _bad_value(key: str, value: Any) -> str | None:
    if value is None:
        return None
    integer = key in _INTEGER_KEYS
    if isinstance(value, bool) or not isinstance(value, int | float):
        return f"{key} is not a number"
    if integer and not isinstance(value, int):
        return f"{key} is not an integer"
    if not math.isfinite(value):
        return f"{key} is not finite"
    return None


def check_metrics(text: str | None) -> tuple[dict[str, Any] | None, str | None]:
    """Parse the peers' summary JSON: (dict of exactly SUMMARY_KEYS, None) or (None, why not).

    Absent or empty text is (None, None): nothing published yet is not a problem.
    """
    if not text:
        return None, None
    try:
        raw = json.loads(text)
    except ValueError as exc:
        return None, f"not JSON ({getattr(exc, 'msg', exc)})"
    if not isinstance(raw, dict):
        return None, f"not a JSON object but {type(raw).__name__}"
    missing = [key for key in SUMMARY_KEYS if key not in raw]
    extra = sorted(str(key) for key in raw if key not in SUMMARY_KEYS)
    if missing or extra:
        parts = ([f"missing {', '.join(missing)}"] if missing else []) + (
            [f"unexpected {', '.join(extra)}"] if extra else []
        )
        return None, "; ".join(parts)
    for key in SUMMARY_KEYS:
        bad = _bad_value(key, raw[key])
        if bad:
            return None, bad
    return {key: raw[key] for key in SUMMARY_KEYS}, None


def parse_metrics(text: str | None) -> dict[str, Any] | None:
    """The peers' summary JSON as a dict of exactly SUMMARY_KEYS; None if absent or malformed."""
    return check_metrics(text)[0]


@dataclass(frozen=True)
class MetricsReading:
    """What the signaling ConfigMap says about the measurement."""

    final: dict[str, Any] | None
    """The server's final `summary`, if present and well-formed."""
    live: dict[str, Any] | None
    """The best available numbers: the summary, else the live `metrics`."""
    problem: str | None
    """Why a present value was ignored, e.g. `data.summary: not JSON (...)`."""


def read_metrics(data: Mapping[str, str]) -> MetricsReading:
    """The summary and live metrics of a ConfigMap's data; malformed values never raise."""
    final, summary_problem = check_metrics(data.get("summary"))
    live, live_problem = check_metrics(data.get("metrics"))
    if summary_problem:
        problem: str | None = f"data.summary: {summary_problem}"
    elif live_problem and final is None:
        problem = f"data.metrics: {live_problem}"
    else:
        problem = None
    return MetricsReading(final=final, live=final or live, problem=problem)


# ---- failures ---------------------------------------------------------------------------


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


def _judge_result(spec: BallSessionSpec, reading: MetricsReading) -> tuple[str, str, str]:
    """Phase, reason and message for a session whose server completed."""
    metrics = reading.final
    if metrics is None:
        why = f" ({reading.problem})" if reading.problem else ""
        return FAILED, "MetricsMissing", f"the server completed without a readable summary{why}"
    mean = metrics.get("mean_error_px")
    if mean is None or not metrics.get("frames_matched"):
        sent = metrics.get("frames_sent")
        return FAILED, "NoMeasurements", f"no coordinate matched any of the {sent} frames sent"
    if mean > spec.max_mean_error_px:
        return (
            FAILED,
            "ErrorTooHigh",
            f"mean error {mean:.4g} px exceeds maxMeanErrorPx {spec.max_mean_error_px:g}",
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
    spec: BallSessionSpec, obs: Observation, data: Mapping[str, str], reading: MetricsReading
) -> tuple[str, str, str]:
    server, client = obs.server, obs.client
    if server is not None and server.succeeded:
        # The measurement is complete; what the client does afterwards cannot undo it.
        client_done = client is None or client.ended
        finished = server.finished_at
        if client_done or (finished is not None and obs.now - finished > CLIENT_FINISH_GRACE):
            return _judge_result(spec, reading)
        return CONNECTED, "Finishing", "the server finished; waiting for the client pod to end"
    failure = _failure(spec, obs)
    if failure:
        return FAILED, *failure
    if "answer" in data and reading.live is not None:
        return CONNECTED, "Streaming", "the peers are connected and streaming"
    if "answer" in data:
        return SIGNALING, "Connecting", "answer received; the peers are connecting"
    if "offer" in data:
        return SIGNALING, "WaitingForAnswer", "the server offered; waiting for the client's answer"
    if any(p is not None and p.started for p in (server, client)):
        return SIGNALING, "WaitingForOffer", "waiting for the server's offer"
    return PENDING, "PodsPending", "waiting for the peer pods to start"


# ---- conditions -------------------------------------------------------------------------


def _condition(
    kind: str,
    value: bool | None,
    reason: str,
    message: str,
    previous: Mapping[str, Mapping[str, Any]],
    now: datetime,
    generation: int | None,
) -> dict[str, Any]:
    """One condition; lastTransitionTime moves only when its status changes."""
    status = "Unknown" if value is None else ("True" if value else "False")
    before = previous.get(kind) or {}
    unchanged = before.get("status") == status and bool(before.get("lastTransitionTime"))
    return {
        "type": kind,
        "status": status,
        "reason": reason,
        "message": message,
        "lastTransitionTime": before["lastTransitionTime"] if unchanged else format_time(now),
        "observedGeneration": generation,
    }


def _by_type(status: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    conditions = status.get("conditions") or []
    return {str(c.get("type")): c for c in conditions if isinstance(c, Mapping)}


def _pods_ready(server: PodView | None, client: PodView | None) -> tuple[bool, str, str]:
    pods = [("server", server), ("client", client)]
    for role, pod in pods:
        if pod is None:
            return False, "PodDeleted", f"the {role} pod does not exist"
    present = [p for _, p in pods if p is not None]
    ended = [p for p in present if p.ended]
    if ended:
        return False, "PodsEnded", "ended: " + ", ".join(f"{p.name} ({p.phase})" for p in ended)
    waiting = [p for p in present if not p.started]
    if waiting:
        reason = next((p.waiting_reason for p in waiting if p.waiting_reason), "PodsPending")
        names = ", ".join(
            p.name + (f" ({p.waiting_reason})" if p.waiting_reason else "") for p in waiting
        )
        return False, reason, f"not running yet: {names}"
    return True, "PodsRunning", "both peer pods are running"


def _metrics_readable(reading: MetricsReading) -> tuple[bool | None, str, str]:
    if reading.problem:
        return False, "MalformedMetrics", f"ignored {reading.problem}"
    if reading.final is not None:
        return True, "SummaryPublished", "the server's final summary parsed"
    if reading.live is not None:
        return True, "MetricsPublished", "the server's live metrics parsed"
    return None, "NoMetricsYet", "the server has not published metrics yet"


def failed_status(
    reason: str,
    message: str,
    now: datetime,
    previous: Mapping[str, Any] | None = None,
    generation: int | None = None,
) -> dict[str, Any]:
    """A terminal Failed status for problems found before any pod ran (InvalidSpec, ...)."""
    previous = previous or {}
    before = _by_type(previous)

    def cond(kind: str, value: bool | None, why: str, text: str) -> dict[str, Any]:
        return _condition(kind, value, why, text, before, now, generation)

    return {
        "phase": FAILED,
        "reason": reason,
        "message": message,
        "observedGeneration": generation,
        "startTime": previous.get("startTime") or format_time(now),
        "completionTime": format_time(now),
        "conditions": [
            cond("PodsReady", False, reason, message),
            cond("Signaled", False, reason, message),
            cond("Connected", False, reason, message),
            cond("Succeeded", False, reason, message),
            cond("Failed", True, reason, message),
            cond("MetricsReadable", None, "NoMetricsYet", "no peer ran"),
        ],
    }


# ---- timing -----------------------------------------------------------------------------


def _wake_at(spec: BallSessionSpec, obs: Observation, data: Mapping[str, str]) -> datetime | None:
    """The earliest future moment at which a time-based rule could change the verdict."""
    moments: list[datetime] = []
    if "answer" not in data:
        moments.append(obs.start + timedelta(seconds=spec.signaling_timeout_seconds))
    if spec.active_deadline_seconds:
        moments.append(obs.start + timedelta(seconds=spec.active_deadline_seconds))
    pods = [p for p in (obs.server, obs.client) if p is not None]
    if any(not p.started for p in pods):
        moments.append(obs.start + obs.pending_timeout)
    server = obs.server
    if server is not None and server.succeeded and server.finished_at is not None:
        moments.append(server.finished_at + CLIENT_FINISH_GRACE)
    future = [m for m in moments if m >= obs.now]
    return min(future) if future else None


# ---- the verdict ------------------------------------------------------------------------


def still_running(*pods: PodView | None) -> list[str]:
    """Names of the pods that have not ended (to stop once the session is terminal)."""
    return [p.name for p in pods if p is not None and not p.ended]


def evaluate(
    spec: BallSessionSpec,
    obs: Observation,
    previous: Mapping[str, Any],
    generation: int | None = None,
) -> Verdict:
    """The next status of a session (`previous` is its current status, maybe empty)."""
    old_phase = previous.get("phase")
    if old_phase in TERMINAL:
        return Verdict(status={})  # terminal states are final
    data: Mapping[str, str] = obs.signaling or {}
    reading = read_metrics(data)
    server, client = obs.server, obs.client

    phase, reason, message = _phase(spec, obs, data, reading)
    terminal = phase in TERMINAL
    before = _by_type(previous)

    def cond(kind: str, value: bool | None, why: str, text: str) -> dict[str, Any]:
        return _condition(kind, value, why, text, before, obs.now, generation)

    signaled = "answer" in data
    if signaled:
        signal_reason = "AnswerReceived"
    elif reason == "SignalingTimeout":
        signal_reason = reason
    else:
        signal_reason = "WaitingForAnswer" if "offer" in data else "WaitingForOffer"
    connected = phase == CONNECTED and reading.live is not None
    conditions = [
        cond("PodsReady", *_pods_ready(server, client)),
        cond(
            "Signaled",
            signaled,
            signal_reason,
            "offer and answer exchanged" if signaled else message,
        ),
        cond(
            "Connected",
            connected,
            "Streaming" if connected else ("SessionEnded" if terminal else "NotConnected"),
            "the server is streaming and publishing metrics"
            if connected
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
        cond("MetricsReadable", *_metrics_readable(reading)),
    ]
    status: dict[str, Any] = {
        "phase": phase,
        "reason": reason,
        "message": message,
        "conditions": conditions,
        "observedGeneration": generation,
    }
    if reading.live is not None:
        status["metrics"] = {**reading.live, "final": reading.final is not None}
    if terminal:
        status["completionTime"] = format_time(obs.now)

    verdict = Verdict(status=status)
    if phase != old_phase:
        verdict.events.append(
            Event("Warning" if phase == FAILED else "Normal", reason, f"{phase}: {message}")
        )
    was_readable = (before.get("MetricsReadable") or {}).get("status")
    if reading.problem and was_readable != "False":
        verdict.events.append(Event("Warning", "MalformedMetrics", f"ignored {reading.problem}"))
    if terminal:
        # Nothing keeps streaming after the verdict; pods that ended stay for their logs.
        verdict.stop_pods = still_running(server, client)
    else:
        verdict.wake_at = _wake_at(spec, obs, data)
    return verdict
