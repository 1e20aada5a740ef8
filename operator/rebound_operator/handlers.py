"""kopf handlers: thin glue between the API (kube.Cluster) and the pure modules.

- BallSession created/resumed: create (or adopt) the children, then reconcile.
- A peer Pod or the signaling ConfigMap changed: reconcile its session (event-driven).
- While a session runs, a timer reconciles every few seconds for the time-based rules
  (signaling timeout, deadline, pending too long); `when=` keeps it, and its finalizer, off
  finished sessions.
All synchronous API calls run in threads; nothing blocks the event loop.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import kopf
from kubernetes.client.exceptions import ApiException
from urllib3.exceptions import HTTPError

from rebound_operator import GROUP, PLURAL, VERSION, kube
from rebound_operator.children import SESSION_LABEL, Names, Owner, all_children
from rebound_operator.lifecycle import (
    FAILED,
    TERMINAL,
    Observation,
    PodView,
    evaluate,
    format_time,
    parse_time,
)
from rebound_operator.settings import OperatorSettings
from rebound_operator.spec import InvalidSpec, parse_spec

RECONCILE_INTERVAL_S = 2.0
ANNOTATION_PREFIX = "rebound.dev"


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
    kube.load_config()
    memo.cluster = kube.Cluster()
    memo.locks = {}
    memo.last_status = {}


def _not_finished(status: kopf.Status, **_: Any) -> bool:
    return status.get("phase") not in TERMINAL


async def _post(body: dict[str, Any], kind: str, reason: str, message: str) -> None:
    kopf.event(cast(kopf.Body, body), type=kind, reason=reason, message=message)


async def reconcile(body: dict[str, Any], memo: kopf.Memo, *, ensure_children: bool) -> None:
    """Bring one BallSession's status (and, on creation, its children) up to date.

    API hiccups become kopf.TemporaryError, so kopf retries in a couple of seconds.
    """
    try:
        await _reconcile(body, memo, ensure_children=ensure_children)
    except (ApiException, HTTPError, OSError) as exc:
        raise kopf.TemporaryError(f"Kubernetes API: {exc}", delay=2) from exc


async def _reconcile(body: dict[str, Any], memo: kopf.Memo, *, ensure_children: bool) -> None:
    meta = body.get("metadata") or {}
    name, namespace, uid = meta["name"], meta["namespace"], meta.get("uid", "")
    key = (namespace, name)
    lock: asyncio.Lock = memo.locks.setdefault(key, asyncio.Lock())
    async with lock:
        previous = memo.last_status.get(key) or dict(body.get("status") or {})
        if previous.get("phase") in TERMINAL:
            return
        if not ensure_children and not previous.get("startTime"):
            return  # the creation handler has not made the children yet
        now = datetime.now(UTC)
        generation = meta.get("generation")
        try:
            spec = parse_spec(dict(body.get("spec") or {}))
        except InvalidSpec as exc:
            await _write(memo, body, previous, _invalid_status(str(exc), now, generation))
            await _post(body, "Warning", "InvalidSpec", str(exc))
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
                    status = _failed_status(previous, "ChildConflict", str(exc), now, generation)
                    await _write(memo, body, previous, status)
                    await _post(body, "Warning", "ChildConflict", str(exc))
                    return
                if outcome == "created":
                    created.append(f"{manifest['kind']} {manifest['metadata']['name']}")
            if created:
                await _post(body, "Normal", "Created", "created " + ", ".join(created))
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
        await _write(memo, body, previous, status)
        for event in verdict.events:
            await _post(body, event.type, event.reason, event.message)
        for pod in verdict.stop_pods:
            await asyncio.to_thread(cluster.delete_pod, pod, namespace)


def _invalid_status(message: str, now: datetime, generation: int | None) -> dict[str, Any]:
    return _failed_status({}, "InvalidSpec", message, now, generation)


def _failed_status(
    previous: dict[str, Any], reason: str, message: str, now: datetime, generation: int | None
) -> dict[str, Any]:
    stamp = format_time(now)

    def cond(kind: str, value: str, why: str, text: str) -> dict[str, Any]:
        return {
            "type": kind,
            "status": value,
            "reason": why,
            "message": text,
            "lastTransitionTime": stamp,
            "observedGeneration": generation,
        }

    return {
        "phase": FAILED,
        "reason": reason,
        "message": message,
        "observedGeneration": generation,
        "startTime": previous.get("startTime") or stamp,
        "completionTime": stamp,
        "conditions": [
            cond("Signaled", "False", reason, message),
            cond("Connected", "False", reason, message),
            cond("Succeeded", "False", reason, message),
            cond("Failed", "True", reason, message),
        ],
    }


async def _write(
    memo: kopf.Memo, body: dict[str, Any], previous: dict[str, Any], status: dict[str, Any]
) -> None:
    if not status or all(previous.get(k) == v for k, v in status.items()):
        return
    meta = body["metadata"]
    cluster: kube.Cluster = memo.cluster
    await asyncio.to_thread(cluster.patch_status, meta["name"], meta["namespace"], status)
    memo.last_status[(meta["namespace"], meta["name"])] = {**previous, **status}


@kopf.on.create(GROUP, VERSION, PLURAL)
async def session_created(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    """Create the children and write the first status."""
    await reconcile(dict(body), memo, ensure_children=True)


@kopf.on.resume(GROUP, VERSION, PLURAL, when=_not_finished)
async def session_resumed(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    """After an operator restart: adopt what exists, create what is missing, reconcile."""
    await reconcile(dict(body), memo, ensure_children=True)


@kopf.timer(GROUP, VERSION, PLURAL, interval=RECONCILE_INTERVAL_S, when=_not_finished)
async def session_tick(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    """Time-based rules: signaling timeout, deadline, pods pending too long."""
    await reconcile(dict(body), memo, ensure_children=False)


@kopf.on.delete(GROUP, VERSION, PLURAL, optional=True)
async def session_deleted(name: str, namespace: str | None, memo: kopf.Memo, **_: Any) -> None:
    """Forget the session; its children go with it (owner references)."""
    memo.locks.pop((namespace, name), None)
    memo.last_status.pop((namespace, name), None)


async def _child_changed(labels: dict[str, str], namespace: str | None, memo: kopf.Memo) -> None:
    session = labels.get(SESSION_LABEL)
    if not session or not namespace or not hasattr(memo, "cluster"):
        return
    cluster: kube.Cluster = memo.cluster
    body = await asyncio.to_thread(cluster.read_session, session, namespace)
    if body is not None:
        await reconcile(body, memo, ensure_children=False)


@kopf.on.event("v1", "pods", labels={SESSION_LABEL: kopf.PRESENT})
async def peer_pod_changed(
    labels: kopf.Labels, namespace: str | None, memo: kopf.Memo, **_: Any
) -> None:
    """A peer pod started, ended or vanished: re-evaluate its session now."""
    await _child_changed(dict(labels), namespace, memo)


@kopf.on.event("v1", "configmaps", labels={SESSION_LABEL: kopf.PRESENT})
async def signaling_changed(
    labels: kopf.Labels, namespace: str | None, memo: kopf.Memo, **_: Any
) -> None:
    """Offer, answer, metrics or summary written: re-evaluate its session now."""
    await _child_changed(dict(labels), namespace, memo)
