"""kopf handlers: thin glue between the API (kube.Cluster) and the pure modules.

- BallSession seen for the first time by this process (created, or listed after an
  operator restart): write its first status, create (or adopt) the children, reconcile.
  Names still held by a deleted session's children are waited for (`WaitingForCleanup`),
  names held by anyone else end the session `ChildConflict`.
- A peer Pod or a signaling ConfigMap changed: reconcile its session (event-driven). The
  operator watches only objects carrying its children's labels (a server-side selector),
  so unrelated pods and ConfigMaps never reach it.
- Time-based rules (signaling timeout, deadline, pending too long, the client's grace) need
  no timer: each reconcile asks `lifecycle.evaluate` for the next moment a rule could fire and
  schedules one in-memory wake-up for it. Unlike a kopf timer or daemon this puts no finalizer
  on the BallSession, so deleting one never hangs while the operator is down; after a restart
  every unfinished session is brought up again on its first event (the listing) and its
  wake-up re-armed.
- A session is judged by the spec its children were created from (`status.sessionSpec`).
- API hiccups are retried; anything else that goes wrong with one session (a bug, input
  nobody foresaw, a refused status) ends that session Failed with a clear reason, never a
  retry loop.
All synchronous API calls run in threads, in priority order (`api_queue`); nothing blocks the
event loop.
Run: `python -m rebound_operator` or `kopf run -m rebound_operator.handlers`.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Callable, Coroutine, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import kopf
from kubernetes.client.exceptions import ApiException
from urllib3.exceptions import HTTPError

from rebound_operator import GROUP, PLURAL, VERSION, kube, telemetry
from rebound_operator.api_queue import FIRST_STATUS, WORK, ApiGate, Priority, PrioritySemaphore
from rebound_operator.cache import ChildCache
from rebound_operator.children import (
    CHILD_SELECTOR,
    SESSION_LABEL,
    Manifest,
    Names,
    Owner,
    all_children,
    live_view_hint,
)
from rebound_operator.lifecycle import (
    TERMINAL,
    Event,
    Observation,
    PodView,
    Signals,
    Verdict,
    acknowledge,
    evaluate,
    failed_status,
    format_time,
    image_refusal,
    parse_time,
    recorded_spec,
    spec_changed,
    still_running,
    waiting_status,
)
from rebound_operator.logs import event_level, object_ref
from rebound_operator.ownership import Holder
from rebound_operator.series_check import SERIES_KEY, check_series, report_hint
from rebound_operator.settings import OperatorSettings
from rebound_operator.spec import BallSessionSpec, InvalidSpec, parse_spec
from rebound_operator.text import MAX_MESSAGE, one_line, seconds

ANNOTATION_PREFIX = "rebound.dev"
WAKE_MARGIN_S = 0.5
"""Wake a little after a rule's boundary (rules fire strictly after it)."""
RETRY_DELAY_S = 3.0
"""A failed wake-up (API hiccup) tries again this much later."""
CLEANUP_POLL_S = 2.0
"""While waiting for a deleted session's children to go, look again this often (their
deletion also wakes the session when they are pods or ConfigMaps)."""
API_ERRORS = (ApiException, HTTPError, OSError)
IDLE_WORKER_S = 0.5
"""How long kopf keeps an idle per-object worker (see `configure`)."""
CONCURRENT_CREATIONS = 64
"""Sessions creating their children at once (enough to keep every API slot busy)."""
logger = logging.getLogger("rebound_operator")

Key = tuple[str, str, str]
"""(namespace, name, uid) of one BallSession."""


@dataclass
class Sessions:
    """Per-session memory shared by all handlers (kopf hands each object a shallow memo copy,
    so this one object, created at startup, is what they all see)."""

    locks: dict[Key, asyncio.Lock] = field(default_factory=dict)
    last_status: dict[Key, dict[str, Any]] = field(default_factory=dict)
    wakeups: dict[Key, asyncio.TimerHandle] = field(default_factory=dict)
    tasks: set[asyncio.Task[None]] = field(default_factory=set)
    warned_open_api_egress: bool = False
    gate: ApiGate = field(default_factory=lambda: ApiGate(kube.API_THREADS))
    """Every synchronous API call goes through it (priorities: see `api_queue`)."""
    creating: PrioritySemaphore = field(
        default_factory=lambda: PrioritySemaphore(CONCURRENT_CREATIONS)
    )
    """Sessions building and creating their children at once, earlier ones first."""
    arrivals: dict[tuple[str, str], int] = field(default_factory=dict)
    """The order in which this process first saw each session (its API calls' priority)."""
    children: ChildCache = field(default_factory=ChildCache)
    """The child pods and ConfigMaps as their watch events last showed them."""
    bodies: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    """(namespace, name) -> the BallSession as its latest watch event showed it."""
    waking: set[tuple[str, str]] = field(default_factory=set)
    """Sessions with a wake-up queued or running: further wake-ups only mark them `dirty`."""
    dirty: set[tuple[str, str]] = field(default_factory=set)
    """Sessions to reconcile once more when their current wake-up ends."""
    ensured: set[Key] = field(default_factory=set)
    """Sessions whose children this operator process has created or adopted."""
    _arrival: Iterator[int] = field(default_factory=itertools.count)

    def wake_later(
        self, key: Key, delay: float, work: Callable[[], Coroutine[Any, Any, None]]
    ) -> None:
        """Run `work()` in `delay` seconds, replacing any earlier wake-up of this session."""
        self.cancel(key)
        loop = asyncio.get_running_loop()

        def fire() -> None:
            self.wakeups.pop(key, None)
            task = loop.create_task(work())
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

        self.wakeups[key] = loop.call_later(max(delay, 0.0), fire)

    def cancel(self, key: Key) -> None:
        """Drop the session's pending wake-up, if any."""
        handle = self.wakeups.pop(key, None)
        if handle is not None:
            handle.cancel()

    def priority(self, key: Key, *, first_status: bool = False) -> Priority:
        """The priority of a session's API calls: first statuses, then earlier sessions."""
        which = key[:2]
        if which not in self.arrivals:
            self.arrivals[which] = next(self._arrival)
        return (FIRST_STATUS if first_status else WORK, self.arrivals[which])

    def forget(self, key: Key) -> None:
        """Drop everything remembered about a session (it was deleted)."""
        self.arrivals.pop(key[:2], None)
        self.cancel(key)
        self.locks.pop(key, None)
        self.last_status.pop(key, None)
        self.bodies.pop(key[:2], None)
        self.dirty.discard(key[:2])
        self.ensured.discard(key)


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    """One place for kopf's settings, the API client and the per-session memory."""
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(
        prefix=ANNOTATION_PREFIX
    )
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=ANNOTATION_PREFIX, key="last-handled-configuration"
    )
    settings.persistence.finalizer = f"{ANNOTATION_PREFIX}/finalizer"
    # Only warnings and errors of handlers become Events ("Logging"); at INFO every Pod and
    # ConfigMap event would post one. The operator's own Events are posted explicitly.
    settings.posting.level = logging.WARNING
    # Watches otherwise stop silently after hours (kopf #585, #614).
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    settings.watching.connect_timeout = 10
    settings.networking.request_timeout = 30
    # kopf keeps one worker per object, holding its latest event, until it has been idle this
    # long (default 5 s): with thousands of children arriving at once that is most of the
    # operator's peak memory, and nothing is gained by waiting.
    settings.batching.idle_timeout = IDLE_WORKER_S
    # kopf's `labels=` filters are client-side: without a server-side selector every pod and
    # ConfigMap of the cluster would be listed, watched and kept in memory.
    for resource in ("pods", "configmaps"):
        settings.watching.label_selectors["v1", resource] = CHILD_SELECTOR
    if not isinstance(getattr(memo, "settings", None), OperatorSettings):
        memo.settings = OperatorSettings()
    operator_settings: OperatorSettings = memo.settings
    if operator_settings.namespaces:
        # Namespaced install: no cluster-wide CRD/namespace observation (no ClusterRole).
        settings.scanning.disabled = True
    memo.cluster = kube.Cluster()  # connected by the login handler
    memo.sessions = Sessions()


@kopf.on.login()
def login(memo: kopf.Memo, **kwargs: Any) -> kopf.ConnectionInfo | None:
    """kopf's own client-based login (service account, else kubeconfig); the operator's
    `kubernetes` client is then built from the very same configuration.

    In a namespaced install kopf looks for the BallSession resource once, right after
    login; until the CRD is served, login is retried rather than serving nothing."""
    info = kopf.login_via_client(**kwargs)
    cluster: kube.Cluster = memo.cluster
    cluster.connect()
    settings: OperatorSettings = memo.settings
    if settings.namespaces and not cluster.sessions_served(settings.namespaces[0]):
        raise kopf.TemporaryError("the BallSession CRD is not served yet; waiting", delay=5)
    return info


def _key(body: Mapping[str, Any]) -> Key:
    meta = body.get("metadata") or {}
    return (str(meta["namespace"]), str(meta["name"]), str(meta.get("uid", "")))


def _post(body: Mapping[str, Any], event: Event) -> None:
    """Post `event` about the session, and log it: the operator's log follows its Events."""
    message = one_line(event.message, MAX_MESSAGE)
    logger.log(
        event_level(event.type),
        "%s: %s",
        event.reason,
        message,
        extra={"k8s_ref": object_ref(body)},
    )
    kopf.event(cast(kopf.Body, body), type=event.type, reason=event.reason, message=message)


async def reconcile(body: Mapping[str, Any], memo: kopf.Memo, *, ensure_children: bool) -> None:
    """Bring one BallSession's status (and, when needed, its children) up to date.

    One reconcile per session at a time. API hiccups become kopf.TemporaryError (retried).
    Anything else ends the session Failed with a reason saying what happened, before the
    next reconcile of it may start: a session can never wedge the operator.
    """
    key = _key(body)
    sessions: Sessions = memo.sessions
    async with sessions.locks.setdefault(key, asyncio.Lock()):
        try:
            await _reconcile(body, memo, ensure_children=ensure_children)
            telemetry.record_reconcile()
        except API_ERRORS as exc:
            telemetry.record_reconcile("api")
            raise kopf.TemporaryError(f"Kubernetes API: {exc}", delay=2) from exc
        except kube.StatusRefused as exc:
            telemetry.record_reconcile("status_refused")
            message = f"the API server refused the status: {exc}"
            await _give_up(body, memo, "StatusRefused", message)
        except Exception as exc:
            telemetry.record_reconcile("internal")
            logger.exception("BallSession %s/%s: cannot be processed", key[0], key[1])
            message = (
                "the operator could not process this session: "
                f"{type(exc).__name__}: {one_line(exc)}"
            )
            await _give_up(body, memo, "InternalError", message)


async def _give_up(body: Mapping[str, Any], memo: kopf.Memo, reason: str, message: str) -> None:
    """`_fail` as a last resort: whatever goes wrong here is logged, never retried."""
    key = _key(body)
    sessions: Sessions = memo.sessions
    sessions.cancel(key)
    previous = sessions.last_status.get(key) or dict(body.get("status") or {})
    try:
        await _fail(memo, body, previous, reason, message, force=True)
    except Exception:
        logger.exception("BallSession %s/%s: could not record %s", key[0], key[1], reason)


async def _fail(
    memo: kopf.Memo,
    body: Mapping[str, Any],
    previous: Mapping[str, Any],
    reason: str,
    message: str,
    *,
    force: bool = False,
) -> None:
    """End the session Failed with `reason`, warn, and stop any pod of its still running."""
    key = _key(body)
    namespace, name, uid = key
    generation = (body.get("metadata") or {}).get("generation")
    status = failed_status(reason, message, datetime.now(UTC), previous, generation)
    await _write(memo, key, {} if force else previous, status, before=previous)
    _post(body, Event("Warning", reason, message))
    await _stop_leftovers(memo, name, namespace, uid)


async def _reconcile(body: Mapping[str, Any], memo: kopf.Memo, *, ensure_children: bool) -> None:
    key = _key(body)
    namespace, name, uid = key
    sessions: Sessions = memo.sessions
    settings: OperatorSettings = memo.settings
    cluster: kube.Cluster = memo.cluster
    generation = (body.get("metadata") or {}).get("generation")
    previous = sessions.last_status.get(key) or dict(body.get("status") or {})
    if previous.get("phase") in TERMINAL:
        sessions.cancel(key)
        await _acknowledge_edit(memo, body, previous, generation)
        if not ensure_children:
            await _stop_leftovers(memo, name, namespace, uid)
        return
    now = datetime.now(UTC)
    try:
        recorded = recorded_spec(previous)
        spec = recorded or parse_spec(dict(body.get("spec") or {}))
    except InvalidSpec as exc:
        await _fail(memo, body, previous, "InvalidSpec", str(exc))
        return
    refused = image_refusal(spec, settings.peer_image, settings.allowed_images)
    if refused:
        await _fail(memo, body, previous, *refused)
        return
    if recorded is not None and generation != previous.get("observedGeneration"):
        changed = spec_changed(recorded, dict(body.get("spec") or {}), generation)
        if changed:
            _post(body, changed)
    start = parse_time(previous.get("startTime")) or now
    observed: kube.Observed | None = None
    if ensure_children or recorded is None or key not in sessions.ensured:
        if not previous.get("phase"):
            # The status the children will have once created, written before creating them:
            # every session has a status at once, however long its children take.
            _, first = _judge(memo, body, spec, kube.Observed.unstarted(name), previous, now, start)
            await _write(memo, key, previous, first, first=True)
            previous = first
        ensured = await _ensure_children(memo, body, previous, spec, start, now)
        if ensured is None:
            return
        sessions.ensured.add(key)
        observed = ensured.observed(name)
    if observed is None:
        observed = await sessions.gate.call(
            sessions.priority(key), cluster.observe, name, namespace, uid, sessions.children
        )
    verdict, status = _judge(memo, body, spec, observed, previous, now, start)
    if verdict.phase in TERMINAL and previous.get("phase") not in TERMINAL:
        # Pod and ConfigMap watch events are not ordered with each other: a server pod's end
        # can arrive before the write of its summary that came first. A verdict is final, so
        # it is taken on what the API server holds now (four reads once per session).
        observed = await sessions.gate.call(
            sessions.priority(key), cluster.observe, name, namespace, uid, sessions.children, True
        )
        verdict, status = _judge(memo, body, spec, observed, previous, now, start)
    await _write(memo, key, previous, status)
    await _carry_out(memo, body, verdict, verdict.pods)
    if verdict.phase in TERMINAL and previous.get("phase") not in TERMINAL:
        await _announce_report(body, observed.server_data)


def _judge(
    memo: kopf.Memo,
    body: Mapping[str, Any],
    spec: BallSessionSpec,
    observed: kube.Observed,
    previous: Mapping[str, Any],
    now: datetime,
    start: datetime,
) -> tuple[Verdict, dict[str, Any]]:
    """The state machine's verdict on what was observed, and the status to write."""
    settings: OperatorSettings = memo.settings
    name = _key(body)[1]
    generation = (body.get("metadata") or {}).get("generation")
    server = None if observed.server is None else PodView.from_manifest(observed.server)
    client = None if observed.client is None else PodView.from_manifest(observed.client)
    names = Names.of(name)
    observation = Observation(
        now=now,
        start=start,
        server=server,
        client=client,
        signals=Signals.read(observed.server_data, observed.client_data),
        pending_timeout=timedelta(seconds=settings.pending_timeout_seconds),
        pod_names={"server": names.server_pod, "client": names.client_pod},
    )
    verdict = evaluate(spec, observation, previous, generation)
    verdict.pods = (server, client)
    status = {
        **verdict.status,
        "startTime": format_time(start),
        "serverPod": names.server_pod,
        "clientPod": names.client_pod,
        "sessionSpec": spec.record(),
    }
    return verdict, status


async def _ensure_children(
    memo: kopf.Memo,
    body: Mapping[str, Any],
    previous: Mapping[str, Any],
    spec: BallSessionSpec,
    start: datetime,
    now: datetime,
) -> kube.Ensured | None:
    """Create or adopt the children; None if the session cannot go on yet (or ever)."""
    key = _key(body)
    namespace, name, uid = key
    settings: OperatorSettings = memo.settings
    cluster: kube.Cluster = memo.cluster
    sessions: Sessions = memo.sessions
    # In arrival order, a bounded number at a time: the manifests exist only meanwhile.
    async with sessions.creating.hold(sessions.priority(key)):
        routes = await sessions.gate.call(sessions.priority(key), cluster.api_routes)
        if not routes and not sessions.warned_open_api_egress:
            sessions.warned_open_api_egress = True
            logger.warning(
                "cannot read the API server's addresses (Service/EndpointSlice "
                "default/kubernetes): session NetworkPolicies allow egress to TCP 443/6443 "
                "anywhere"
            )
        manifests = all_children(
            Owner(name, namespace, uid),
            spec,
            default_image=settings.peer_image,
            pull_policy=settings.image_pull_policy,
            api_routes=routes,
            pending_timeout_seconds=settings.pending_timeout_seconds,
        )
        try:
            ensured = await _create_all(memo, key, manifests)
        except kube.ChildConflict as exc:
            failure: tuple[str, str] | None = ("ChildConflict", str(exc))
        except kube.ChildRefused as exc:
            failure = ("ChildRefused", str(exc))
        else:
            failure = None
        del manifests
    generation = (body.get("metadata") or {}).get("generation")
    if failure is not None:
        await _fail(memo, body, previous, *failure)
        return None
    for (kind, _name), obj in ensured.objects.items():
        if kind in ("Pod", "ConfigMap"):
            sessions.children.remember(kind, obj)
    if ensured.created:
        _post(body, Event("Normal", "Created", "created " + ", ".join(ensured.created)))
        if spec.live_view and any(c.startswith("Pod ") for c in ensured.created):
            _post(body, Event("Normal", "LiveView", live_view_hint(Owner(name, namespace, uid))))
    if ensured.leaving is None:
        return ensured
    waited = (now - start).total_seconds()
    if waited > settings.pending_timeout_seconds:
        await _fail(
            memo,
            body,
            previous,
            "ChildConflict",
            f"{ensured.leaving} still exists after {seconds(round(waited))}: it belongs to a "
            "deleted BallSession or is being deleted, and has not gone",
        )
        return None
    message = (
        f"{ensured.leaving} still belongs to a deleted BallSession or is being deleted; "
        "waiting for it to go"
    )
    status = waiting_status(message, now, {**previous, "startTime": format_time(start)}, generation)
    if previous.get("reason") != status["reason"]:
        _post(body, Event("Normal", status["reason"], message))
    await _write(memo, key, previous, status)
    sessions.wake_later(key, CLEANUP_POLL_S, lambda: _wake(key, memo))
    return None


async def _create_all(memo: kopf.Memo, key: Key, manifests: list[Manifest]) -> kube.Ensured:
    """Create every child in order, stopping at the first name still held by a leaving
    object; the pod names are checked first (`Cluster.leaving_pod`). One request per gate
    call, so a new session's first status never waits long for a slot."""
    sessions: Sessions = memo.sessions
    cluster: kube.Cluster = memo.cluster
    priority = sessions.priority(key)
    uid = key[2]
    for manifest in manifests:
        if manifest["kind"] == "Pod":
            leaving = await sessions.gate.call(priority, cluster.leaving_pod, manifest, uid)
            if leaving is not None:
                return kube.Ensured(leaving=leaving)
    result = kube.Ensured()
    for manifest in manifests:
        outcome, obj = await sessions.gate.call(priority, cluster.ensure, manifest, uid)
        kind, name = manifest["kind"], manifest["metadata"]["name"]
        if outcome is Holder.LEAVING:
            result.leaving = f"{kind} {manifest['metadata']['namespace']}/{name}"
            return result
        if outcome is None:
            result.created.append(f"{kind} {name}")
        if obj is not None and kind in ("Pod", "ConfigMap"):
            result.objects[(kind, name)] = obj  # what the first observation needs
    return result


async def _carry_out(
    memo: kopf.Memo,
    body: Mapping[str, Any],
    verdict: Verdict,
    pods: tuple[PodView | None, PodView | None],
) -> None:
    """Post the verdict's events, stop the pods it names, arm its wake-up."""
    key = _key(body)
    namespace = key[0]
    sessions: Sessions = memo.sessions
    cluster: kube.Cluster = memo.cluster
    for event in verdict.events:
        _post(body, event)
    for pod in pods:
        if pod is not None and pod.name in verdict.stop_pods:
            await sessions.gate.call(
                sessions.priority(key), cluster.delete_pod, pod.name, namespace, pod.uid
            )
    if verdict.wake_at is None:
        sessions.cancel(key)
    else:
        delay = (verdict.wake_at - datetime.now(UTC)).total_seconds() + WAKE_MARGIN_S
        sessions.wake_later(key, delay, lambda: _wake(key, memo))


async def _announce_report(body: Mapping[str, Any], data: Mapping[str, Any] | None) -> None:
    """At the end: say how to render the report of the series the server stored in its own
    ConfigMap (checked in a thread: up to 200 kB of untrusted text), or why it is unusable."""
    text = (data or {}).get(SERIES_KEY)
    if text is None:
        return
    namespace, name, _ = _key(body)
    reading = await asyncio.to_thread(check_series, text)
    _post(body, Event(*report_hint(name, namespace, reading)))


async def _acknowledge_edit(
    memo: kopf.Memo, body: Mapping[str, Any], previous: Mapping[str, Any], generation: Any
) -> None:
    """A finished session whose spec was edited: warn once, and mark the edit as observed."""
    if generation is None or generation == previous.get("observedGeneration"):
        return
    _post(
        body,
        Event(
            "Warning",
            "SpecChanged",
            f"spec changed (generation {generation}) after the session ended; its result "
            "stands: delete and re-create the BallSession to run again",
        ),
    )
    await _write(memo, _key(body), previous, acknowledge(previous, generation))


async def _stop_leftovers(memo: kopf.Memo, name: str, namespace: str, uid: str) -> None:
    """A finished session's pods that still run are stopped (again, if a first try failed)."""
    cluster: kube.Cluster = memo.cluster
    sessions: Sessions = memo.sessions
    key = (namespace, name, uid)
    observed = await sessions.gate.call(
        sessions.priority(key), cluster.observe, name, namespace, uid
    )
    pods = [PodView.from_manifest(p) for p in (observed.server, observed.client) if p is not None]
    running = set(still_running(*pods))
    for pod in pods:
        if pod.name in running:
            await sessions.gate.call(
                sessions.priority(key), cluster.delete_pod, pod.name, namespace, pod.uid
            )


async def _wake(key: Key, memo: kopf.Memo) -> None:
    """Reconcile a session now; wake-ups that arrive while one is queued or running are
    folded into one more reconcile after it (a burst of child events costs two, not one
    each).

    Used for time-based wake-ups and for child events (kopf does not retry event handlers).
    An empty uid in `key` accepts whichever session has that name.
    """
    sessions: Sessions = memo.sessions
    which = key[:2]
    if which in sessions.waking:
        sessions.dirty.add(which)
        return
    sessions.waking.add(which)
    try:
        while True:
            sessions.dirty.discard(which)
            await _wake_once(key, memo)
            if which not in sessions.dirty:
                return
    finally:
        sessions.waking.discard(which)


async def _wake_once(key: Key, memo: kopf.Memo) -> None:
    """Reconcile the session as its latest watch event showed it (read from the API if no
    event was seen yet); after an API hiccup try again a little later."""
    namespace, name, uid = key
    cluster: kube.Cluster = memo.cluster
    sessions: Sessions = memo.sessions
    try:
        body = sessions.bodies.get((namespace, name))
        if body is None:
            try:
                body = await sessions.gate.call(
                    sessions.priority(key), cluster.read_session, name, namespace
                )
            except API_ERRORS as exc:
                raise kopf.TemporaryError(f"Kubernetes API: {exc}", delay=RETRY_DELAY_S) from exc
        if body is None or (uid and (body.get("metadata") or {}).get("uid") != uid):
            sessions.forget(key)
            return
        await reconcile(body, memo, ensure_children=False)
    except kopf.TemporaryError as exc:
        logger.warning("BallSession %s/%s: %s; retrying", namespace, name, exc)
        sessions.wake_later(key, RETRY_DELAY_S, lambda: _wake(key, memo))
    except Exception:
        logger.exception("BallSession %s/%s: wake-up failed", namespace, name)


async def _write(
    memo: kopf.Memo,
    key: Key,
    previous: Mapping[str, Any],
    status: dict[str, Any],
    *,
    before: Mapping[str, Any] | None = None,
    first: bool = False,
) -> None:
    """Patch the status subresource, skipping no-op patches (compared with `previous`).
    A write that ends the session is counted in the operator's metrics, once: `before` is
    the status it replaces, when `previous` is not (a forced write). A session's first
    status goes before every other waiting API call (see `api_queue`)."""
    if not status or all(previous.get(k) == v for k, v in status.items()):
        return
    namespace, name, _ = key
    cluster: kube.Cluster = memo.cluster
    sessions: Sessions = memo.sessions
    priority = sessions.priority(key, first_status=first)
    await sessions.gate.call(priority, cluster.patch_status, name, namespace, status)
    sessions.last_status[key] = {**previous, **status}
    replaced = previous if before is None else before
    telemetry.record_status_written(replaced.get("phase"), {**replaced, **status})


@kopf.on.event(GROUP, VERSION, PLURAL)
async def session_event(event: kopf.RawEvent, body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    """Every BallSession event (the initial listing after a start included): a session this
    operator process has not yet brought up is started (its first status, then its children
    created or adopted); a deleted one is forgotten (its children go with it: owner
    references); an edited spec of a running or finished session is noticed. Every event
    updates the sessions-by-phase gauge, so it follows what the API server holds, also
    after a restart.

    An event handler rather than kopf's create/resume handlers: those record kopf's own
    state in the object (one more write, and one more event, per session), which
    idempotent creation and adoption make unnecessary."""
    key = _key(body)
    if event.get("type") == "DELETED":
        telemetry.SESSIONS.forget(key[0], key[1])
    else:
        telemetry.SESSIONS.see(key[0], key[1], (body.get("status") or {}).get("phase"))
    if not hasattr(memo, "sessions"):
        return
    sessions: Sessions = memo.sessions
    if event.get("type") == "DELETED":
        sessions.forget(key)
        return
    status = sessions.last_status.get(key) or dict(body.get("status") or {})
    raw = event.get("object")
    if status.get("phase") in TERMINAL:
        sessions.bodies.pop(key[:2], None)  # a finished session wakes only with an event
    elif isinstance(raw, dict):
        sessions.bodies[key[:2]] = _session_essentials(
            cast(dict[str, Any], raw), status=key not in sessions.last_status
        )
    if status.get("phase") not in TERMINAL and key not in sessions.ensured:
        await _start(key, body, memo)
        return
    generation = (body.get("metadata") or {}).get("generation")
    if status.get("sessionSpec") and generation != status.get("observedGeneration"):
        await _wake(key, memo)


SESSION_META = ("name", "namespace", "uid", "generation", "labels", "deletionTimestamp")


def _session_essentials(raw: Mapping[str, Any], *, status: bool) -> dict[str, Any]:
    """What a reconcile reads of a BallSession (not managedFields, annotations such as
    kubectl's last-applied copy, ...): kept for every running session, so kept small. Its
    status only while the operator has not written one itself (`Sessions.last_status`)."""
    meta = raw.get("metadata") or {}
    essentials = {
        "apiVersion": raw.get("apiVersion"),
        "kind": raw.get("kind"),
        "metadata": {k: meta[k] for k in SESSION_META if k in meta},
        "spec": raw.get("spec") or {},
    }
    if status:
        essentials["status"] = raw.get("status") or {}
    return essentials


async def _start(key: Key, body: Mapping[str, Any], memo: kopf.Memo) -> None:
    """Bring a session up now; after an API hiccup, again a little later (kopf does not
    retry event handlers)."""
    sessions: Sessions = memo.sessions
    try:
        await reconcile(body, memo, ensure_children=True)
    except kopf.TemporaryError as exc:
        logger.warning("BallSession %s/%s: %s; retrying", key[0], key[1], exc)
        sessions.wake_later(key, RETRY_DELAY_S, lambda: _wake(key, memo))


async def _child_changed(
    kind: str,
    event: kopf.RawEvent,
    labels: Mapping[str, str],
    namespace: str | None,
    memo: kopf.Memo,
) -> None:
    session = labels.get(SESSION_LABEL)
    cluster: kube.Cluster | None = getattr(memo, "cluster", None)
    if not session or not namespace or cluster is None or not cluster.connected:
        return
    sessions: Sessions = memo.sessions
    raw = event.get("object")
    if isinstance(raw, dict):
        sessions.children.seen(kind, str(event.get("type")), raw)
    await _wake((namespace, session, ""), memo)


@kopf.on.event("v1", "pods", labels={SESSION_LABEL: kopf.PRESENT})
async def peer_pod_changed(
    event: kopf.RawEvent, labels: kopf.Labels, namespace: str | None, memo: kopf.Memo, **_: Any
) -> None:
    """A peer pod started, ended or vanished: remember it, re-evaluate its session now."""
    await _child_changed("Pod", event, labels, namespace, memo)


@kopf.on.event("v1", "configmaps", labels={SESSION_LABEL: kopf.PRESENT})
async def signaling_changed(
    event: kopf.RawEvent, labels: kopf.Labels, namespace: str | None, memo: kopf.Memo, **_: Any
) -> None:
    """Offer, answer, metrics or summary written: remember it, re-evaluate its session now."""
    await _child_changed("ConfigMap", event, labels, namespace, memo)
