"""The operator's pods and ConfigMaps as their watch events last showed them (pure).

kopf already watches every child pod and signaling ConfigMap (label-selected) to wake their
session; keeping what those events said lets a reconcile observe the children without
reading them back, as a controller's informer cache does. Two rules keep it honest:

- an entry is trusted for `max_age_s` after the watch last spoke about the object; after
  that the reconcile reads the object from the API again (a watch that restarted never
  reports objects deleted in between, so nothing stale can live longer than that);
- a deletion is remembered (as "known absent") just as long, so a reconcile right after
  one does not resurrect the object from a read that raced with it; an object of the same
  name but another UID (a re-created session's child) replaces it at once.

Only what the operator reads is kept (a pod's identity, ownership, deletion, node and
status; a ConfigMap's identity, ownership and data), so 1,000 sessions' children stay small.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

Kind = str
"""`Pod` or `ConfigMap`."""
Entry = tuple[float, dict[str, Any] | None, str]
"""(when the watch last spoke about it, the trimmed object or None if deleted, its UID)."""

META_KEYS = (
    "name",
    "namespace",
    "uid",
    "resourceVersion",
    "ownerReferences",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
)
POD_STATUS_KEYS = ("phase", "reason", "message", "podIP", "startTime")
"""A pod's status fields the state machine reads, besides the scheduler's condition and each
container's state."""
PURGE_EVERY = 512
"""Writes between sweeps of expired entries."""


def trimmed(kind: Kind, obj: Mapping[str, Any]) -> dict[str, Any]:
    """The part of a pod or ConfigMap the operator reads."""
    meta = obj.get("metadata")
    meta = meta if isinstance(meta, Mapping) else {}
    result: dict[str, Any] = {"metadata": {k: meta[k] for k in META_KEYS if k in meta}}
    if kind == "Pod":
        spec = obj.get("spec")
        if isinstance(spec, Mapping) and "nodeName" in spec:
            result["spec"] = {"nodeName": spec["nodeName"]}
        status = obj.get("status")
        if isinstance(status, Mapping):
            result["status"] = _pod_status(status)
    elif isinstance(obj.get("data"), Mapping):
        result["data"] = obj["data"]
    return result


def _pod_status(status: Mapping[str, Any]) -> dict[str, Any]:
    kept: dict[str, Any] = {k: status[k] for k in POD_STATUS_KEYS if k in status}
    conditions = status.get("conditions")
    if isinstance(conditions, list):
        kept["conditions"] = [
            c for c in conditions if isinstance(c, Mapping) and c.get("type") == "PodScheduled"
        ]
    containers = status.get("containerStatuses")
    if isinstance(containers, list):
        kept["containerStatuses"] = [
            {"state": c.get("state")} for c in containers if isinstance(c, Mapping)
        ]
    return kept


class ChildCache:
    """(kind, namespace, name) -> the latest trimmed object, or known absent."""

    def __init__(self, max_age_s: float = 60.0, clock: Callable[[], float] = time.monotonic):
        self.max_age_s = max_age_s
        self._clock = clock
        self._entries: dict[tuple[Kind, str, str], Entry] = {}
        self._writes = 0

    def __len__(self) -> int:
        return len(self._entries)

    def seen(self, kind: Kind, event_type: str, obj: Mapping[str, Any]) -> None:
        """Record a watch event (ADDED, MODIFIED, DELETED) about a pod or ConfigMap."""
        meta = obj.get("metadata")
        if not isinstance(meta, Mapping):
            return
        namespace, name = meta.get("namespace"), meta.get("name")
        if not isinstance(namespace, str) or not isinstance(name, str):
            return
        value = None if event_type == "DELETED" else trimmed(kind, obj)
        uid = str(meta.get("uid") or "")
        self._entries[(kind, namespace, name)] = (self._clock(), value, uid)
        self._writes += 1
        if self._writes % PURGE_EVERY == 0:
            self.purge()

    def remember(self, kind: Kind, obj: Mapping[str, Any]) -> None:
        """Record an object the operator itself just created or read, unless a watch event
        about that same object (same UID) is already known: an event handled meanwhile may
        be newer than the response."""
        meta = obj.get("metadata")
        if not isinstance(meta, Mapping):
            return
        namespace, name = meta.get("namespace"), meta.get("name")
        if not isinstance(namespace, str) or not isinstance(name, str):
            return
        entry = self._entries.get((kind, namespace, name))
        fresh = entry is not None and self._clock() - entry[0] <= self.max_age_s
        if fresh and entry is not None and entry[2] == str(meta.get("uid") or ""):
            return
        self.seen(kind, "ADDED", obj)

    def get(self, kind: Kind, namespace: str, name: str) -> tuple[bool, dict[str, Any] | None]:
        """(known, object): known=False means "read it from the API"; (True, None) means
        it is known to be gone."""
        entry = self._entries.get((kind, namespace, name))
        if entry is None or self._clock() - entry[0] > self.max_age_s:
            return False, None
        return True, entry[1]

    def purge(self) -> None:
        """Drop every expired entry."""
        now = self._clock()
        expired = [k for k, (at, _, _) in self._entries.items() if now - at > self.max_age_s]
        for key in expired:
            del self._entries[key]
