"""The operator's Prometheus metrics (prometheus-client), served at `/metrics` (`serving`).

(`metrics` is the other thing: the peers' summary as the operator reads it.)

What is counted, and why it survives restarts without double counting:
- `rebound_sessions{phase}` (gauge): the BallSessions this operator sees, by phase. It is
  recomputed from the watched objects (each watch event replaces the session's phase, a
  deletion removes it), so a restarted operator reports the same numbers once kopf has
  listed the BallSessions again.
- `rebound_sessions_finished_total{phase,reason}` (counter) and the histograms of finished
  sessions (`rebound_session_mean_error_px`, `rebound_session_p95_error_px`,
  `rebound_session_fps`, `rebound_session_duration_seconds`, by phase): counted only when
  this operator writes the transition into a terminal phase. A session that is already
  terminal is never written again, so no session is counted twice (after a restart the new
  process counts from zero, which Prometheus' `rate`/`increase` read as a counter reset).
- `rebound_reconciles_total`, `rebound_reconcile_errors_total{error}`: reconciles of one
  session, and those that failed (`api`: retried; `status_refused`, `internal`: the
  session ended Failed).
- `rebound_api_request_duration_seconds{verb,resource}` and
  `rebound_api_requests_total{verb,resource,code}`: the operator's own Kubernetes API calls
  (the `kubernetes` client: children, reads, status patches). kopf's watches, Events and
  annotation patches go through kopf's own client and are not included.
- prometheus-client's `process_*` (memory, CPU, open files) and `python_*` collectors.

Label values come from fixed sets (phases, reasons, verbs, resources this operator asks
for), never from names or peer text, so the number of series is bounded.
"""

from __future__ import annotations

import threading
import time
from collections import Counter as Tally
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

from kubernetes import client
from kubernetes.client.exceptions import ApiException
from prometheus_client import REGISTRY, Counter, Histogram, disable_created_metrics
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from rebound_operator.lifecycle import PENDING, PHASES, TERMINAL, parse_time

ERROR_BUCKETS = (0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 50.0)
"""Tracking error in px: a good session is well under 0.1 px; above 1 px is a poor one."""
FPS_BUCKETS = (1.0, 5.0, 10.0, 15.0, 20.0, 24.0, 30.0, 45.0, 60.0, 90.0, 120.0)
DURATION_BUCKETS = (5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 86400.0)
API_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
RECONCILE_ERRORS = ("api", "status_refused", "internal")

# No `*_created` series (the time each labelled child appeared): they double the output and
# nothing reads them.
disable_created_metrics()

FINISHED = Counter(
    "rebound_sessions_finished",
    "BallSessions this operator moved into a terminal phase, by phase and reason.",
    ["phase", "reason"],
)
MEAN_ERROR = Histogram(
    "rebound_session_mean_error_px",
    "Mean tracking error (px) of finished sessions that measured one.",
    ["phase"],
    buckets=ERROR_BUCKETS,
)
P95_ERROR = Histogram(
    "rebound_session_p95_error_px",
    "95th percentile tracking error (px) of finished sessions that measured one.",
    ["phase"],
    buckets=ERROR_BUCKETS,
)
FPS = Histogram(
    "rebound_session_fps",
    "Frame rate the server achieved, of finished sessions that measured one.",
    ["phase"],
    buckets=FPS_BUCKETS,
)
DURATION = Histogram(
    "rebound_session_duration_seconds",
    "From the children's creation (status.startTime) to the verdict (completionTime).",
    ["phase"],
    buckets=DURATION_BUCKETS,
)
RECONCILES = Counter("rebound_reconciles", "Reconciles of one BallSession.")
RECONCILE_ERRORS_TOTAL = Counter(
    "rebound_reconcile_errors",
    "Reconciles that failed: api (retried), status_refused or internal (session Failed).",
    ["error"],
)
API_LATENCY = Histogram(
    "rebound_api_request_duration_seconds",
    "Latency of the operator's own Kubernetes API calls (not kopf's watches and Events).",
    ["verb", "resource"],
    buckets=API_BUCKETS,
)
API_REQUESTS = Counter(
    "rebound_api_requests",
    "The operator's own Kubernetes API calls by verb, resource and HTTP code ('error': no answer).",
    ["verb", "resource", "code"],
)


# ---- sessions by phase ----------------------------------------------------------------


class SessionPhases(Collector):
    """The phase of every BallSession the operator currently sees; collected as the
    `rebound_sessions{phase}` gauge (every phase present, 0 where none)."""

    def __init__(self) -> None:
        self._phases: dict[tuple[str, str], str] = {}
        self._lock = threading.Lock()

    def see(self, namespace: str, name: str, phase: Any) -> None:
        """Record a session's phase as last seen (no status yet counts as Pending)."""
        value = phase if phase in PHASES else PENDING
        with self._lock:
            self._phases[(namespace, name)] = value

    def forget(self, namespace: str, name: str) -> None:
        """The session was deleted."""
        with self._lock:
            self._phases.pop((namespace, name), None)

    def counts(self) -> dict[str, int]:
        """Sessions per phase, every phase present."""
        with self._lock:
            tally = Tally(self._phases.values())
        return {phase: tally.get(phase, 0) for phase in PHASES}

    def collect(self) -> Iterable[Metric]:
        gauge = GaugeMetricFamily(
            "rebound_sessions", "BallSessions the operator sees, by phase.", labels=["phase"]
        )
        for phase, count in self.counts().items():
            gauge.add_metric([phase], count)
        yield gauge

    def describe(self) -> Iterable[Metric]:
        return self.collect()


SESSIONS = SessionPhases()
REGISTRY.register(SESSIONS)


# ---- finished sessions ----------------------------------------------------------------


@dataclass(frozen=True)
class Finished:
    """What a terminal status says about the session, for the counter and histograms."""

    phase: str
    reason: str
    mean_error_px: float | None
    p95_error_px: float | None
    fps: float | None
    duration_s: float | None


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def finished(before_phase: Any, status: Mapping[str, Any]) -> Finished | None:
    """The session's result if writing `status` moves it from a non-terminal phase into a
    terminal one; None otherwise (already terminal, or still running). Pure."""
    phase = status.get("phase")
    if phase not in TERMINAL or before_phase in TERMINAL:
        return None
    metrics = status.get("metrics")
    values = metrics if isinstance(metrics, Mapping) else {}
    start = parse_time(status.get("startTime"))
    end = parse_time(status.get("completionTime"))
    duration = (end - start).total_seconds() if start and end and end >= start else None
    reason = status.get("reason")
    return Finished(
        phase=str(phase),
        reason=reason if isinstance(reason, str) and reason.isalnum() else "Unknown",
        mean_error_px=_number(values.get("mean_error_px")),
        p95_error_px=_number(values.get("p95_error_px")),
        fps=_number(values.get("achieved_fps")),
        duration_s=duration,
    )


def record_finished(result: Finished) -> None:
    """Count one finished session and observe its numbers."""
    FINISHED.labels(result.phase, result.reason).inc()
    for histogram, value in (
        (MEAN_ERROR, result.mean_error_px),
        (P95_ERROR, result.p95_error_px),
        (FPS, result.fps),
        (DURATION, result.duration_s),
    ):
        if value is not None:
            histogram.labels(result.phase).observe(value)


def record_status_written(before_phase: Any, status: Mapping[str, Any]) -> None:
    """After a status patch succeeded: count the session if this write finished it."""
    result = finished(before_phase, status)
    if result is not None:
        record_finished(result)


# ---- reconciles -----------------------------------------------------------------------


def record_reconcile(error: str | None = None) -> None:
    """One reconcile; `error` one of RECONCILE_ERRORS if it failed."""
    RECONCILES.inc()
    if error is not None:
        RECONCILE_ERRORS_TOTAL.labels(error).inc()


# ---- API calls ------------------------------------------------------------------------


def api_labels(method: str, url: str) -> tuple[str, str]:
    """(verb, resource) of a Kubernetes API request, as the API server's own metrics name
    them: `get`/`list`/`watch`/`create`/`patch`/`update`/`delete`, and e.g. `pods`,
    `ballsessions/status`. Object names and namespaces never appear. Pure."""
    parts = urlsplit(url)
    segments = [s for s in parts.path.split("/") if s]
    if segments[:1] == ["api"]:
        rest = segments[2:]
    elif segments[:1] == ["apis"]:
        rest = segments[3:]
    else:
        rest = []
    if rest[:1] == ["namespaces"] and len(rest) >= 3:
        rest = rest[2:]  # namespaces/<ns>/<resource>...
    resource = rest[0] if rest else "discovery"
    named = len(rest) >= 2
    if len(rest) >= 3:
        resource += "/" + rest[2]
    method = method.upper()
    if method == "GET":
        watching = parse_qs(parts.query).get("watch", [""])[0] in ("true", "1")
        verb = "watch" if watching else ("get" if named else "list")
    else:
        verb = {"POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}.get(
            method, method.lower()
        )
    return verb, resource


def record_api_call(method: str, url: str, code: str, seconds: float) -> None:
    """One API request's outcome (`code`: the HTTP status, or `error` without one)."""
    verb, resource = api_labels(method, url)
    API_LATENCY.labels(verb, resource).observe(seconds)
    API_REQUESTS.labels(verb, resource, code).inc()


class TimedApiClient(client.ApiClient):
    """The `kubernetes` ApiClient, timing every request into the API metrics."""

    def call_api(self, method: str, url: str, *args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        code = "error"
        try:
            response = super().call_api(method, url, *args, **kwargs)
            code = str(getattr(response, "status", "error"))
            return response
        except ApiException as exc:
            code = str(exc.status) if exc.status else "error"
            raise
        finally:
            record_api_call(method, url, code, time.perf_counter() - started)
