"""The BallSession state machine: observed children in, phase + conditions + metrics out.

Pure: no Kubernetes client, no clock. The handlers gather an `Observation`, call `evaluate`,
patch the status it returns, post its events, stop the pods it names and wake up again at
`Verdict.wake_at`. Phases summarise the conditions (Kubernetes API conventions) and never
move backwards:

    Pending -> Signaling -> Connected -> Succeeded | Failed

Condition types (all set on the first visit, `Unknown` where nothing is known yet):
Ready / Reconciling / Stalled (kstatus: what Flux and Argo CD read), PodsReady (both peer
pods running), Signaled (offer and answer exchanged), Connected (the server is streaming),
Succeeded, Failed, MetricsReadable (the server's metrics/summary parse and are plausible;
False names the key and why). Every path out of a pod problem, a timeout or a bad result
ends Failed with a CamelCase reason and a message naming the cause. Like a Job, a session is
terminal only once its pods ended or are being stopped.

Two clocks: the pending timeout counts from the start (the children's creation) while a peer
pod has not started (Pending/Unschedulable quotes the scheduler); the signaling timeout counts
from the moment both peers run, so a session queued for room never fails as if signaling broke.

Everything a peer or the kubelet hands over is untrusted: ConfigMap values are checked by
`metrics` and any text copied into a message is cut to one short line (`text`).
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from rebound_operator.gates import failure, judge
from rebound_operator.metrics import MetricsReading, read_metrics
from rebound_operator.placement import Landing, placement_status
from rebound_operator.spec import BallSessionSpec, InvalidSpec, parse_spec
from rebound_operator.text import MAX_MESSAGE, one_line, seconds

PENDING, SIGNALING, CONNECTED, SUCCEEDED, FAILED = (
    "Pending",
    "Signaling",
    "Connected",
    "Succeeded",
    "Failed",
)
PHASES = (PENDING, SIGNALING, CONNECTED, SUCCEEDED, FAILED)
TERMINAL = frozenset({SUCCEEDED, FAILED})
CONDITION_TYPES = (
    "Ready",
    "Reconciling",
    "Stalled",
    "PodsReady",
    "Signaled",
    "Connected",
    "Succeeded",
    "Failed",
    "MetricsReadable",
)
WAITING_FOR_CLEANUP = "WaitingForCleanup"
"""Pending reason while a child's name is still held by a deleted session's object."""
UNSCHEDULABLE = "Unschedulable"
"""Pending (and, at the pending timeout, Failed) reason: the scheduler cannot place a pod
(PodScheduled=False/Unschedulable); the message quotes the scheduler."""

IMAGE_PULL_REASONS = frozenset({"ErrImagePull", "ImagePullBackOff", "InvalidImageName"})
START_FAILURE_REASONS = frozenset(
    {"CreateContainerConfigError", "CreateContainerError", "RunContainerError", "CrashLoopBackOff"}
)
EXIT_TIMEOUT = 3
"""Peers exit 3 when the other peer never showed up (docs/CONTRACTS.md)."""
CLIENT_FINISH_GRACE = timedelta(seconds=30)
JUDGED_REASONS = frozenset({"Completed", "ExpectationNotMet", "ErrorTooHigh"})
"""Terminal reasons reached by judging the gates (their verdicts go to `status.gates`)."""
"""How long a completed server waits for its client to end before the session is judged."""


def format_time(moment: datetime) -> str:
    """RFC 3339 in UTC with a Z, as Kubernetes writes times."""
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(text: Any) -> datetime | None:
    """A Kubernetes timestamp, or None."""
    if not text or not isinstance(text, str):
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None


# ---- what the children say ---------------------------------------------------------------


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _detail(value: Any) -> str | None:
    return None if value is None else one_line(value)


def _deletion_requested(meta: Mapping[str, Any]) -> datetime | None:
    deadline = parse_time(meta.get("deletionTimestamp"))
    grace = meta.get("deletionGracePeriodSeconds")
    if deadline is None:
        return None
    if isinstance(grace, int) and not isinstance(grace, bool) and 0 <= grace <= 10**6:
        return deadline - timedelta(seconds=grace)
    return deadline


def _unschedulable(status: Mapping[str, Any]) -> str | None:
    """The scheduler's message if the pod's PodScheduled condition is False/Unschedulable."""
    for condition in status.get("conditions") or []:
        if not isinstance(condition, Mapping) or condition.get("type") != "PodScheduled":
            continue
        if condition.get("status") == "False" and condition.get("reason") == UNSCHEDULABLE:
            return _detail(condition.get("message")) or "no message from the scheduler"
    return None


@dataclass(frozen=True)
class PodView:
    """What the state machine needs to know about one peer pod (text fields bounded)."""

    name: str
    phase: str = "Pending"
    exit_code: int | None = None
    reason: str | None = None
    waiting_reason: str | None = None
    message: str | None = None
    started: bool = False
    finished_at: datetime | None = None
    uid: str = ""
    deleted_at: datetime | None = None
    """When someone asked for the pod to go: metadata.deletionTimestamp is that moment plus
    the grace period, so the grace period is taken off."""
    started_at: datetime | None = None
    """When its container started (the kubelet's `startedAt`), if it did."""
    unschedulable: str | None = None
    """The scheduler's message while the pod's PodScheduled condition is
    False/Unschedulable (e.g. `0/1 nodes are available: 1 Insufficient cpu.`)."""
    landing: Landing = field(default_factory=Landing)
    """The node it was bound to and its address, once known."""

    @classmethod
    def from_manifest(cls, pod: Mapping[str, Any]) -> PodView:
        """Summarise a Pod object (as returned by the API)."""
        meta = pod.get("metadata") or {}
        status = pod.get("status") or {}
        view = cls(
            name=one_line(meta.get("name", "?")),
            uid=str(meta.get("uid") or ""),
            phase=one_line(status.get("phase") or "Pending", 32),
            reason=_detail(status.get("reason")),
            message=_detail(status.get("message")),
            deleted_at=_deletion_requested(meta),
            unschedulable=_unschedulable(status),
            landing=Landing.of(pod),
        )
        for container in status.get("containerStatuses") or []:
            state = container.get("state") or {}
            if "terminated" in state:
                term = state["terminated"] or {}
                code = term.get("exitCode")
                return replace(
                    view,
                    exit_code=code
                    if isinstance(code, int) and not isinstance(code, bool)
                    else None,
                    reason=_detail(term.get("reason")) or view.reason,
                    message=_detail(term.get("message")) or view.message,
                    started=True,
                    started_at=parse_time(term.get("startedAt")),
                    finished_at=parse_time(term.get("finishedAt")),
                )
            if "running" in state:
                started_at = parse_time((state["running"] or {}).get("startedAt"))
                return replace(view, reason=None, message=None, started=True, started_at=started_at)
            if "waiting" in state:
                waiting = state["waiting"] or {}
                return replace(
                    view,
                    reason=None,
                    waiting_reason=_detail(waiting.get("reason")),
                    message=_detail(waiting.get("message")) or view.message,
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
class Signals:
    """What the two signaling ConfigMaps say, each read only for the keys its writer owns:
    `offer`, `metrics`, `summary`, `error` from the server's; `answer`, `error` from the
    client's (docs/CONTRACTS.md). Anything else in them is ignored."""

    offer: bool = False
    answer: bool = False
    metrics: str | None = None
    summary: str | None = None
    server_error: str | None = None
    client_error: str | None = None
    missing: tuple[str, ...] = ()
    """Roles whose ConfigMap does not exist (any more)."""

    @classmethod
    def read(cls, server: Mapping[str, Any] | None, client: Mapping[str, Any] | None) -> Signals:
        """From the `data` of the server's and the client's ConfigMap (None = not found)."""
        s, c = server or {}, client or {}

        def error(data: Mapping[str, Any]) -> str | None:
            value = _text(data.get("error"))
            return one_line(value) if value else None

        return cls(
            offer=bool(_text(s.get("offer"))),
            answer=bool(_text(c.get("answer"))),
            metrics=_text(s.get("metrics")),
            summary=_text(s.get("summary")),
            server_error=error(s),
            client_error=error(c),
            missing=tuple(r for r, d in (("server", server), ("client", client)) if d is None),
        )

    def error(self, role: str) -> str | None:
        """The one-line error a role's peer wrote, if any."""
        return self.server_error if role == "server" else self.client_error


@dataclass(frozen=True)
class Observation:
    """Everything observed about one session at one moment."""

    now: datetime
    start: datetime
    server: PodView | None
    client: PodView | None
    signals: Signals = field(default_factory=Signals)
    pending_timeout: timedelta = timedelta(minutes=5)
    """The operator's `--pending-timeout`: what a spec's `pendingTimeoutSeconds: 0` means."""
    pod_names: Mapping[str, str] = field(default_factory=dict)
    """role -> the pod's name, to name a pod that no longer exists."""

    def gone(self, role: str) -> str:
        """The message for a peer pod that was deleted before the session ended."""
        name = self.pod_names.get(role)
        pod = f"{role} pod {name}" if name else f"{role} pod"
        return f"{pod} was deleted before the session ended"

    def both_running_since(self) -> datetime | None:
        """When the later of the two peers started (the signaling clock's zero), or None
        while either has not. A start the kubelet did not time counts from the session's."""
        pods = (self.server, self.client)
        if any(p is None or not p.started for p in pods):
            return None
        return max([self.start, *(p.started_at for p in pods if p is not None and p.started_at)])


def pending_timeout(spec: BallSessionSpec, obs: Observation) -> timedelta:
    """How long the peer pods may take to start: the spec's `pendingTimeoutSeconds`, or the
    operator's `--pending-timeout` when it is 0."""
    if spec.pending_timeout_seconds:
        return timedelta(seconds=spec.pending_timeout_seconds)
    return obs.pending_timeout


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
    pods: tuple[PodView | None, PodView | None] = (None, None)
    """The server and client pods the verdict was reached on (for stopping them)."""

    @property
    def phase(self) -> str:
        """The new phase."""
        return str(self.status.get("phase", PENDING))


# ---- gates before any child exists --------------------------------------------------------


def image_refusal(
    spec: BallSessionSpec, default_image: str, allowed: Sequence[str]
) -> tuple[str, str] | None:
    """("ImageNotAllowed", why) if the peer image is not the default nor matches an allowed
    pattern (shell-style, `*` matches anything including `/`), else None."""
    image = spec.image or default_image
    if image == default_image or any(fnmatch.fnmatchcase(image, p) for p in allowed):
        return None
    return "ImageNotAllowed", (
        f"spec.image {one_line(image, 128)} is not allowed by the operator "
        f"(--peer-image or an --allowed-image pattern)"
    )


def recorded_spec(status: Mapping[str, Any]) -> BallSessionSpec | None:
    """The spec the children were created from (`status.sessionSpec`), if recorded.

    InvalidSpec if a recorded spec no longer validates.
    """
    recorded = status.get("sessionSpec")
    if not isinstance(recorded, Mapping):
        return None
    return parse_spec(dict(recorded), where="status.sessionSpec")


def spec_changed(
    recorded: BallSessionSpec, current: Mapping[str, Any], generation: int | None
) -> Event | None:
    """A Warning if the spec now differs from the one the children were created from."""
    try:
        same = parse_spec(dict(current)).record() == recorded.record()
    except InvalidSpec:
        same = False
    if same:
        return None
    return Event(
        "Warning",
        "SpecChanged",
        f"spec changed (generation {generation}) after the children were created; the "
        "session keeps the spec it started with (status.sessionSpec): delete and re-create "
        "the BallSession to run the new one",
    )


# ---- failures ---------------------------------------------------------------------------


def _not_started(pod: PodView, role: str, timeout: timedelta, why: str = "") -> tuple[str, str]:
    """The failure of a pod that did not start in time: the scheduler's words if it could
    not be placed (`Unschedulable`), else `PodPendingTooLong` with the kubelet's reason."""
    limit = seconds(timeout.total_seconds())
    if pod.unschedulable:
        return UNSCHEDULABLE, (
            f"{role} pod {pod.name} could not be scheduled within {limit}{why}: {pod.unschedulable}"
        )
    return "PodPendingTooLong", (
        f"{role} pod {pod.name} has not started after {limit}{why}"
        + (f" ({pod.waiting_reason})" if pod.waiting_reason else "")
    )


def _pod_failure(
    pod: PodView, role: str, obs: Observation, timeout: timedelta
) -> tuple[str, str] | None:
    if pod.waiting_reason in IMAGE_PULL_REASONS:
        return "ImagePullFailed", f"{role} pod {pod.name} cannot pull its image: " + (
            pod.message or pod.waiting_reason or ""
        )
    if pod.waiting_reason in START_FAILURE_REASONS:
        return "PodStartFailed", f"{role} pod {pod.name} cannot start ({pod.waiting_reason}): " + (
            pod.message or "no message from the kubelet"
        )
    if pod.failed:
        if pod.exit_code == EXIT_TIMEOUT:
            other_role = "client" if role == "server" else "server"
            partner = obs.client if role == "server" else obs.server
            if partner is not None and not partner.started:
                # It waited for a peer that was never scheduled or started: that is the cause.
                why = f" (the {role} pod {pod.name} gave up waiting for it)"
                return _not_started(partner, other_role, obs.now - obs.start, why)
            return (
                "SignalingTimeout",
                f"{role} pod {pod.name} gave up: the other peer never connected",
            )
        detail = f"exit code {pod.exit_code}" if pod.exit_code is not None else "no exit code"
        if pod.reason:
            detail += f", {pod.reason}"
        error = obs.signals.error(role)
        suffix = f": {error}" if error else ""
        return "PodFailed", f"{role} pod {pod.name} failed ({detail}){suffix}"
    if not pod.started and obs.now - obs.start > timeout:
        return _not_started(pod, role, timeout)
    return None


def _failure(spec: BallSessionSpec, obs: Observation) -> tuple[str, str] | None:
    timeout = pending_timeout(spec, obs)
    for role, pod in (("server", obs.server), ("client", obs.client)):
        if pod is None:
            return "PodDeleted", obs.gone(role)
        found = _pod_failure(pod, role, obs, timeout)
        if found:
            return found
    signals = obs.signals
    if signals.missing:
        return "SignalingLost", f"the {signals.missing[0]}'s signaling ConfigMap was deleted"
    elapsed = (obs.now - obs.start).total_seconds()
    since = obs.both_running_since()
    signaling = 0.0 if since is None else (obs.now - since).total_seconds()
    if not signals.answer and signaling > spec.signaling_timeout_seconds:
        missing = "answer from the client" if signals.offer else "offer from the server"
        return "SignalingTimeout", (
            f"no {missing} within signalingTimeoutSeconds={spec.signaling_timeout_seconds}"
        )
    if spec.active_deadline_seconds and elapsed > spec.active_deadline_seconds:
        return "DeadlineExceeded", (
            f"session ran longer than activeDeadlineSeconds={spec.active_deadline_seconds}"
        )
    return None


def _ran_to_its_limit(spec: BallSessionSpec, reading: MetricsReading) -> bool:
    """Whether the server's summary shows it ended at the spec's own limit. A frame limit is
    checked by count; a time limit is trusted (a starved server sends fewer frames in its
    time); an unlimited session never ends by itself."""
    if spec.frames == 0 and spec.duration_seconds == 0:
        return False
    if spec.duration_seconds:
        return True
    metrics = reading.final
    return metrics is None or metrics["frames_sent"] >= spec.frames


def _stopped_from_outside(
    spec: BallSessionSpec,
    obs: Observation,
    server: PodView,
    client: PodView | None,
    reading: MetricsReading,
) -> tuple[str, str] | None:
    """A server that exited 0 because a peer pod was deleted (its SIGTERM ends a peer
    gracefully), or before its limit, did not complete the session."""
    finished = server.finished_at
    for role, pod in (("client", client), ("server", server)):
        deleted = None if pod is None else pod.deleted_at
        if pod is not None and deleted is not None and (finished is None or deleted <= finished):
            return "PodDeleted", f"{role} pod {pod.name} was deleted before the session ended"
    if _ran_to_its_limit(spec, reading):
        return None
    if client is None:
        return "PodDeleted", obs.gone("client")
    sent = reading.final["frames_sent"] if reading.final else None
    if spec.frames == 0 and spec.duration_seconds == 0:
        return "Interrupted", (
            f"server pod {server.name} stopped after {sent} frames; a session without a limit "
            "only ends when its BallSession is deleted"
        )
    return "Interrupted", f"server pod {server.name} stopped after {sent} of {spec.frames} frames"


def _judge_result(spec: BallSessionSpec, reading: MetricsReading) -> tuple[str, str, str]:
    """Phase, reason and message for a session whose server completed."""
    metrics = reading.final
    if metrics is None:
        if reading.summary_problem:
            return (
                FAILED,
                "MalformedMetrics",
                (f"the server completed with an unusable summary ({reading.summary_problem})"),
            )
        return FAILED, "MetricsMissing", "the server completed without publishing a summary"
    mean = metrics["mean_error_px"]
    if mean is None or not metrics["frames_matched"]:
        sent = metrics["frames_sent"]
        return FAILED, "NoMeasurements", f"no coordinate matched any of the {sent} frames sent"
    failed = failure(spec, judge(spec, metrics))
    if failed:
        return FAILED, *failed
    p95 = metrics["p95_error_px"]
    return (
        SUCCEEDED,
        "Completed",
        (
            f"{metrics['frames_matched']}/{metrics['frames_sent']} frames matched, "
            f"mean error {mean:.4g} px, p95 {'n/a' if p95 is None else f'{p95:.4g}'} px"
        ),
    )


def _phase(
    spec: BallSessionSpec, obs: Observation, reading: MetricsReading
) -> tuple[str, str, str]:
    server, client, signals = obs.server, obs.client, obs.signals
    if server is not None and server.succeeded:
        stopped = _stopped_from_outside(spec, obs, server, client, reading)
        if stopped:
            return FAILED, *stopped
        # The measurement is complete; what the client does afterwards cannot undo it.
        client_done = client is None or client.ended
        finished = server.finished_at
        if client_done or (finished is not None and obs.now - finished > CLIENT_FINISH_GRACE):
            return _judge_result(spec, reading)
        return CONNECTED, "Finishing", "the server finished; waiting for the client pod to end"
    failure = _failure(spec, obs)
    if failure:
        return FAILED, *failure
    waiting = [(r, p) for r, p in (("server", server), ("client", client)) if p and not p.started]
    unplaceable = [(r, p) for r, p in waiting if p.unschedulable]
    if unplaceable:
        role, pod = unplaceable[0]
        limit = seconds(pending_timeout(spec, obs).total_seconds())
        return (
            PENDING,
            UNSCHEDULABLE,
            (
                f"{role} pod {pod.name} cannot be scheduled (waiting up to {limit}): "
                f"{pod.unschedulable}"
            ),
        )
    if waiting:
        # The signaling clock starts once both peers run; until then the session is pending.
        return PENDING, "PodsPending", "waiting for the peer pods to start"
    if signals.answer and reading.live is not None:
        return CONNECTED, "Streaming", "the peers are connected and streaming"
    if signals.answer:
        return SIGNALING, "Connecting", "answer received; the peers are connecting"
    if signals.offer:
        return SIGNALING, "WaitingForAnswer", "the server offered; waiting for the client's answer"
    return SIGNALING, "WaitingForOffer", "waiting for the server's offer"


def candidate_pair(metrics: Mapping[str, Any]) -> str | None:
    """The selected ICE candidate pair in one word for `kubectl get`: `host/host udp`
    (server's side first), None until the summary names it. Its values are validated
    (LinkSummary) before they get here."""
    local = metrics.get("ice_local_candidate_type")
    remote = metrics.get("ice_remote_candidate_type")
    protocol = metrics.get("ice_protocol")
    if not (local and remote):
        return None
    return f"{local}/{remote}" + (f" {protocol}" if protocol else "")


# ---- conditions -------------------------------------------------------------------------

Value = tuple[bool | None, str, str]
"""A condition's (status, reason, message)."""


def _condition(
    kind: str,
    value: Value,
    previous: Mapping[str, Mapping[str, Any]],
    now: datetime,
    generation: int | None,
) -> dict[str, Any]:
    """One condition; lastTransitionTime moves only when its status changes."""
    flag, reason, message = value
    status = "Unknown" if flag is None else ("True" if flag else "False")
    before = previous.get(kind) or {}
    unchanged = before.get("status") == status and bool(before.get("lastTransitionTime"))
    return {
        "type": kind,
        "status": status,
        "reason": reason,
        "message": one_line(message, MAX_MESSAGE),
        "lastTransitionTime": before["lastTransitionTime"] if unchanged else format_time(now),
        "observedGeneration": generation,
    }


def _by_type(status: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    conditions = status.get("conditions") or []
    return {str(c.get("type")): c for c in conditions if isinstance(c, Mapping)}


def _kstatus(phase: str, reason: str, message: str) -> dict[str, Value]:
    """Ready / Reconciling / Stalled as kstatus (Flux, Argo CD) reads them."""
    return {
        "Ready": (phase == SUCCEEDED, reason, message),
        "Reconciling": (phase not in TERMINAL, reason, message),
        "Stalled": (phase == FAILED, reason, message),
    }


def _status(
    phase: str,
    reason: str,
    message: str,
    values: Mapping[str, Value],
    previous: Mapping[str, Any],
    now: datetime,
    generation: int | None,
) -> dict[str, Any]:
    """A status with every condition type, in CONDITION_TYPES order."""
    before = _by_type(previous)
    every = {**_kstatus(phase, reason, message), **values}
    return {
        "phase": phase,
        "reason": reason,
        "message": one_line(message, MAX_MESSAGE),
        "observedGeneration": generation,
        "conditions": [_condition(k, every[k], before, now, generation) for k in CONDITION_TYPES],
    }


def _pods_ready(server: PodView | None, client: PodView | None) -> Value:
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
        if any(p.unschedulable for p in waiting):
            reason = UNSCHEDULABLE
        else:
            reason = next((p.waiting_reason for p in waiting if p.waiting_reason), "PodsPending")
        if not reason.isalnum():
            reason = "PodsPending"  # a reason must be CamelCase; kubelet text may not be
        names = ", ".join(p.name + _why_waiting(p) for p in waiting)
        return False, reason, f"not running yet: {names}"
    return True, "PodsRunning", "both peer pods are running"


def _why_waiting(pod: PodView) -> str:
    if pod.unschedulable:
        return f" ({UNSCHEDULABLE}: {pod.unschedulable})"
    return f" ({pod.waiting_reason})" if pod.waiting_reason else ""


def _metrics_readable(reading: MetricsReading) -> Value:
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
    """A terminal Failed status for problems found outside `evaluate` (InvalidSpec,
    ChildConflict, ImageNotAllowed, an internal error, ...)."""
    previous = previous or {}
    failed: Value = (True, reason, message)
    ended: Value = (False, reason, message)
    before = _by_type(previous)
    readable = before.get("MetricsReadable") or {}
    status = _status(
        FAILED,
        reason,
        message,
        {
            "PodsReady": ended,
            "Signaled": ended,
            "Connected": ended,
            "Succeeded": ended,
            "Failed": failed,
            "MetricsReadable": (
                {"True": True, "False": False}.get(str(readable.get("status"))),
                str(readable.get("reason") or "NoMetricsYet"),
                str(readable.get("message") or "no metrics were read"),
            ),
        },
        previous,
        now,
        generation,
    )
    status["startTime"] = previous.get("startTime") or format_time(now)
    status["completionTime"] = format_time(now)
    return status


def waiting_status(
    message: str,
    now: datetime,
    previous: Mapping[str, Any] | None = None,
    generation: int | None = None,
) -> dict[str, Any]:
    """Pending/WaitingForCleanup: a child's name is held by a deleted session's object."""
    previous = previous or {}
    unknown: Value = (None, WAITING_FOR_CLEANUP, message)
    status = _status(
        PENDING,
        WAITING_FOR_CLEANUP,
        message,
        {
            "PodsReady": (False, WAITING_FOR_CLEANUP, message),
            "Signaled": unknown,
            "Connected": unknown,
            "Succeeded": (False, "Running", "the session has not finished"),
            "Failed": (False, "NoFailure", "no failure observed"),
            "MetricsReadable": (None, "NoMetricsYet", "no peer ran yet"),
        },
        previous,
        now,
        generation,
    )
    status["startTime"] = previous.get("startTime") or format_time(now)
    return status


def acknowledge(previous: Mapping[str, Any], generation: int | None) -> dict[str, Any]:
    """For a terminal session whose spec changed: the same status, observed at `generation`
    (so kstatus readers do not wait forever for a spec nobody will run)."""
    conditions = [
        {**c, "observedGeneration": generation}
        for c in previous.get("conditions") or []
        if isinstance(c, Mapping)
    ]
    return {"observedGeneration": generation, "conditions": conditions}


# ---- timing -----------------------------------------------------------------------------


def _wake_at(spec: BallSessionSpec, obs: Observation) -> datetime | None:
    """The earliest future moment at which a time-based rule could change the verdict."""
    moments: list[datetime] = []
    since = obs.both_running_since()
    if not obs.signals.answer and since is not None:
        moments.append(since + timedelta(seconds=spec.signaling_timeout_seconds))
    if spec.active_deadline_seconds:
        moments.append(obs.start + timedelta(seconds=spec.active_deadline_seconds))
    pods = [p for p in (obs.server, obs.client) if p is not None]
    if any(not p.started for p in pods):
        moments.append(obs.start + pending_timeout(spec, obs))
    server = obs.server
    if server is not None and server.succeeded and server.finished_at is not None:
        moments.append(server.finished_at + CLIENT_FINISH_GRACE)
    future = [m for m in moments if m >= obs.now]
    return min(future) if future else None


# ---- the verdict ------------------------------------------------------------------------


def still_running(*pods: PodView | None) -> list[str]:
    """Names of the pods that have not ended (to stop once the session is terminal)."""
    return [p.name for p in pods if p is not None and not p.ended]


def _rank(phase: Any) -> int:
    return PHASES.index(phase) if phase in PHASES else -1


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
    reading = read_metrics(obs.signals.summary, obs.signals.metrics)
    server, client, signals = obs.server, obs.client, obs.signals

    phase, reason, message = _phase(spec, obs, reading)
    if phase not in TERMINAL and _rank(phase) < _rank(old_phase):
        # Phases never move backwards (e.g. live metrics turning malformed while Connected).
        phase = str(old_phase)
        reason = str(previous.get("reason") or reason)
        message = str(previous.get("message") or message)
    terminal = phase in TERMINAL

    if signals.answer:
        signal_value: Value = (True, "AnswerReceived", "offer and answer exchanged")
    elif reason == "SignalingTimeout":
        signal_value = (False, reason, message)
    elif signals.offer:
        signal_value = (False, "WaitingForAnswer", message)
    else:
        signal_value = (False, "WaitingForOffer", message)
    connected = phase == CONNECTED
    status = _status(
        phase,
        reason,
        message,
        {
            "PodsReady": _pods_ready(server, client),
            "Signaled": signal_value,
            "Connected": (
                connected,
                "Streaming" if connected else ("SessionEnded" if terminal else "NotConnected"),
                "the peers are connected and the server is streaming"
                if connected
                else ("the session has ended" if terminal else "not streaming yet"),
            ),
            "Succeeded": (
                phase == SUCCEEDED,
                reason if terminal else "Running",
                message if terminal else "the session has not finished",
            ),
            "Failed": (
                phase == FAILED,
                reason if phase == FAILED else "NoFailure",
                message if phase == FAILED else "no failure observed",
            ),
            "MetricsReadable": _metrics_readable(reading),
        },
        previous,
        obs.now,
        generation,
    )
    if reading.live is not None:
        status["metrics"] = {**reading.live, "final": reading.final is not None}
        pair = candidate_pair(reading.live)
        if pair:
            status["candidatePair"] = pair
    status.update(
        placement_status(
            server.landing if server else Landing(), client.landing if client else Landing()
        )
    )
    if terminal:
        status["completionTime"] = format_time(obs.now)
        if reading.final is not None and reason in JUDGED_REASONS:
            status["gates"] = [gate.record() for gate in judge(spec, reading.final)]

    verdict = Verdict(status=status)
    said_before = (previous.get("reason"), previous.get("message")) == (reason, status["message"])
    if phase != old_phase or (reason == UNSCHEDULABLE and not said_before):
        # Unschedulable is told again whenever the scheduler's words change.
        verdict.events.append(
            Event(
                "Warning" if phase == FAILED or reason == UNSCHEDULABLE else "Normal",
                reason,
                one_line(f"{phase}: {message}", MAX_MESSAGE),
            )
        )
    was_readable = (_by_type(previous).get("MetricsReadable") or {}).get("status")
    if reading.problem and was_readable != "False":
        verdict.events.append(
            Event(
                "Warning", "MalformedMetrics", one_line(f"ignored {reading.problem}", MAX_MESSAGE)
            )
        )
    if terminal:
        # Nothing keeps streaming after the verdict; pods that ended stay for their logs.
        verdict.stop_pods = still_running(server, client)
    else:
        verdict.wake_at = _wake_at(spec, obs)
    return verdict
