"""kopf handlers: thin glue between the API (kube.Cluster) and the pure modules.

- BallSession created, or seen again after an operator restart: create (or adopt) the
  children, then reconcile.
- A peer Pod or the signaling ConfigMap changed: reconcile its session (event-driven).
- Time-based rules (signaling timeout, deadline, pending too long, the client's grace) need
  no timer: each reconcile asks `lifecycle.evaluate` for the next moment a rule could fire and
  schedules one in-memory wake-up for it. Unlike a kopf timer or daemon this puts no finalizer
  on the BallSession, so deleting one never hangs while the operator is down; after a restart
  the resume handler reconciles every unfinished session and re-arms its wake-up.
All synchronous API calls run in threads (asyncio.to_thread); nothing blocks the event loop.
Run: `python -m rebound_operator` or `kopf run -m rebound_operator.handlers`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import kopf
from kubernetes.client.exceptions import ApiException
from urllib3.exceptions import HTTPError

from rebound_operator import GROUP, PLURAL, VERSION, kube
from rebound_operator.children import SESSION_LABEL, Names, Owner, all_children
from rebound_operator.lifecycle import (
    TERMINAL,
    Observation,
    PodView,
    evaluate,
    failed_status,
    format_time,
    parse_time,
    still_running,
)
from rebound_operator.settings import OperatorSettings
from rebound_operator.spec import InvalidSpec, parse_spec

ANNOTATION_PREFIX = "rebound.dev"
WAKE_MARGIN_S = 0.5
"""Wake a little after a rule's boundary (rules fire strictly after it)."""
RETRY_DELAY_S = 3.0
"""A failed wake-up (API hiccup) tries again this much later."""
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

    def forget(self, key: Key) -> None:
        """Drop everything remembered about a session (it was deleted)."""
        self.cancel(key)
        self.locks.pop(key, None)
        self.last_status.pop(key, None)


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
    settings.posting.level = logging.INFO
    # Watches otherwise stop silently after hours (kopf #585, #614).
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    settings.watching.connect_timeout = 10
    settings.networking.request_timeout = 30
    if not isinstance(getattr(memo, "settings", None), OperatorSettings):
        memo.settings = OperatorSettings()
    memo.cluster = kube.Cluster()  # connected by the login handler
    memo.sessions = Sessions()


@kopf.on.login()
def login(memo: kopf.Memo, **kwargs: Any) -> kopf.ConnectionInfo | None:
    """kopf's own client-based login (service account, else kubeconfig); the operator's
    `kubernetes` client is then built from the very same configuration."""
    info = kopf.login_via_client(**kwargs)
    cluster: kube.Cluster = memo.cluster
    cluster.connect()
    return info


def _not_finished(status: kopf.Status, **_: Any) -> bool:
    return status.get("phase") not in TERMINAL


def _key(body: Mapping[str, Any]) -> Key:
    meta = body.get("metadata") or {}
    return (str(meta["namespace"]), str(meta["name"]), str(meta.get("uid", "")))


def _post(body: Mapping[str, Any], kind: str, reason: str, message: str) -> None:
    kopf.event(cast(kopf.Body, body), type=kind, reason=reason, message=message)


async def reconcile(body: Mapping[str, Any], memo: kopf.Memo, *, ensure_children: bool) -> None:
    """Bring one BallSession's status (and, on creation, its children) up to date.

    API hiccups become kopf.TemporaryError, so kopf retries in a couple of seconds.
    """
    try:
        await _reconcile(body, memo, ensure_children=ensure_children)
    except (ApiException, HTTPError, OSError) as exc:
        raise kopf.TemporaryError(f"Kubernetes API: {exc}", delay=2) from exc


async def _reconcile(body: Mapping[str, Any], memo: kopf.Memo, *, ensure_children: bool) -> None:
    key = _key(body)
    namespace, name, uid = key
    sessions: Sessions = memo.sessions
    async with sessions.locks.setdefault(key, asyncio.Lock()):
        previous = sessions.last_status.get(key) or dict(body.get("status") or {})
        if previous.get("phase") in TERMINAL:
            sessions.cancel(key)
            if not ensure_children:
                await _stop_leftovers(memo, name, namespace)
            return
        if not ensure_children and not previous.get("startTime"):
            return  # the creation handler has not made the children yet
        now = datetime.now(UTC)
        generation = (body.get("metadata") or {}).get("generation")
        try:
            spec = parse_spec(dict(body.get("spec") or {}))
        except InvalidSpec as exc:
            await _write(
                memo, key, previous, failed_status("InvalidSpec", str(exc), now, None, generation)
            )
            _post(body, "Warning", "InvalidSpec", str(exc))
            return
        settings: OperatorSettings = memo.settings
        cluster: kube.Cluster = memo.cluster
        start = parse_time(previous.get("startTime")) or now
        if ensure_children:
            owner = Owner(name, namespace, uid)
            created = []
            for manifest in all_children(
                owner,
                spec,
                default_image=settings.peer_image,
                pull_policy=settings.image_pull_policy,
            ):
                try:
                    outcome = await asyncio.to_thread(cluster.ensure, manifest, uid)
                except kube.ChildConflict as exc:
                    status = failed_status("ChildConflict", str(exc), now, previous, generation)
                    await _write(memo, key, previous, status)
                    _post(body, "Warning", "ChildConflict", str(exc))
                    return
                if outcome == "created":
                    created.append(f"{manifest['kind']} {manifest['metadata']['name']}")
            if created:
                _post(body, "Normal", "Created", "created " + ", ".join(created))
        observed = await asyncio.to_thread(cluster.observe, name, namespace)
        observation = Observation(
            now=now,
            start=start,
            server=None if observed.server is None else PodView.from_manifest(observed.server),
            client=None if observed.client is None else PodView.from_manifest(observed.client),
            signaling=observed.signaling,
            pending_timeout=timedelta(seconds=settings.pending_timeout_seconds),
        )
        verdict = evaluate(spec, observation, previous, generation)
        names = Names.of(name)
        status = {
            **verdict.status,
            "startTime": format_time(start),
            "serverPod": names.server_pod,
            "clientPod": names.client_pod,
        }
        await _write(memo, key, previous, status)
        for event in verdict.events:
            _post(body, event.type, event.reason, event.message)
        for pod in verdict.stop_pods:
            await asyncio.to_thread(cluster.delete_pod, pod, namespace)
        if verdict.wake_at is None:
            sessions.cancel(key)
        else:
            delay = (verdict.wake_at - datetime.now(UTC)).total_seconds() + WAKE_MARGIN_S
            sessions.wake_later(key, delay, lambda: _wake(key, memo))


async def _stop_leftovers(memo: kopf.Memo, name: str, namespace: str) -> None:
    """A finished session's pods that still run are stopped (again, if a first try failed)."""
    cluster: kube.Cluster = memo.cluster
    observed = await asyncio.to_thread(cluster.observe, name, namespace)
    pods = [
        None if p is None else PodView.from_manifest(p) for p in (observed.server, observed.client)
    ]
    for pod in still_running(*pods):
        await asyncio.to_thread(cluster.delete_pod, pod, namespace)


async def _wake(key: Key, memo: kopf.Memo) -> None:
    """Re-read a session and reconcile it; on failure try again a little later.

    Used for time-based wake-ups and for child events (kopf does not retry event handlers).
    An empty uid in `key` accepts whichever session has that name.
    """
    namespace, name, uid = key
    cluster: kube.Cluster = memo.cluster
    sessions: Sessions = memo.sessions
    try:
        try:
            body = await asyncio.to_thread(cluster.read_session, name, namespace)
        except (ApiException, HTTPError, OSError) as exc:
            raise kopf.TemporaryError(f"Kubernetes API: {exc}", delay=RETRY_DELAY_S) from exc
        if body is None or (uid and (body.get("metadata") or {}).get("uid") != uid):
            sessions.forget(key)
            return
        await reconcile(body, memo, ensure_children=False)
    except Exception as exc:
        if isinstance(exc, kopf.TemporaryError):
            logger.warning("BallSession %s/%s: %s; retrying", namespace, name, exc)
        else:
            logger.exception("BallSession %s/%s: reconcile failed; retrying", namespace, name)
        sessions.wake_later(key, RETRY_DELAY_S, lambda: _wake(key, memo))


async def _write(
    memo: kopf.Memo, key: Key, previous: Mapping[str, Any], status: dict[str, Any]
) -> None:
    """Patch the status subresource, skipping no-op patches."""
    if not status or all(previous.get(k) == v for k, v in status.items()):
        return
    namespace, name, _ = key
    cluster: kube.Cluster = memo.cluster
    await asyncio.to_thread(cluster.patch_status, name, namespace, status)
    sessions: Sessions = memo.sessions
    sessions.last_status[key] = {**previous, **status}


@kopf.on.create(GROUP, VERSION, PLURAL)
async def session_created(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    """Create the children and write the first status."""
    await reconcile(body, memo, ensure_children=True)


@kopf.on.resume(GROUP, VERSION, PLURAL, when=_not_finished)
async def session_resumed(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    """After an operator restart: adopt what exists, create what is missing, reconcile."""
    await reconcile(body, memo, ensure_children=True)


@kopf.on.event(GROUP, VERSION, PLURAL)
async def session_event(event: kopf.RawEvent, body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    """Forget a deleted session; its children go with it (owner references)."""
    if event.get("type") == "DELETED" and hasattr(memo, "sessions"):
        sessions: Sessions = memo.sessions
        sessions.forget(_key(body))


async def _child_changed(labels: Mapping[str, str], namespace: str | None, memo: kopf.Memo) -> None:
    session = labels.get(SESSION_LABEL)
    cluster: kube.Cluster | None = getattr(memo, "cluster", None)
    if not session or not namespace or cluster is None or not cluster.connected:
        return
    await _wake((namespace, session, ""), memo)


@kopf.on.event("v1", "pods", labels={SESSION_LABEL: kopf.PRESENT})
async def peer_pod_changed(
    labels: kopf.Labels, namespace: str | None, memo: kopf.Memo, **_: Any
) -> None:
    """A peer pod started, ended or vanished: re-evaluate its session now."""
    await _child_changed(labels, namespace, memo)


@kopf.on.event("v1", "configmaps", labels={SESSION_LABEL: kopf.PRESENT})
async def signaling_changed(
    labels: kopf.Labels, namespace: str | None, memo: kopf.Memo, **_: Any
) -> None:
    """Offer, answer, metrics or summary written: re-evaluate its session now."""
    await _child_changed(labels, namespace, memo)
