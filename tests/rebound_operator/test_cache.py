"""The child cache: what the watch said, trusted for a while, never resurrecting the dead."""

from __future__ import annotations

import json
from typing import Any

from rebound_operator.cache import PURGE_EVERY, ChildCache, trimmed
from rebound_operator.kube import Cluster


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def pod(
    name: str = "s-server", phase: str = "Pending", rv: str = "1", uid: str = "u1"
) -> dict[str, Any]:
    return {
        "metadata": {
            "name": name,
            "namespace": "ns",
            "uid": uid,
            "resourceVersion": rv,
            "ownerReferences": [{"uid": "owner", "controller": True}],
            "managedFields": [{"manager": "x" * 1000}],
            "annotations": {"big": "y" * 1000},
        },
        "spec": {"nodeName": "n1", "containers": [{"args": ["z" * 1000]}]},
        "status": {
            "phase": phase,
            "podIP": "10.0.0.1",
            "hostIP": "10.0.0.254",
            "qosClass": "Burstable",
            "conditions": [
                {"type": "Ready", "status": "False"},
                {"type": "PodScheduled", "status": "True"},
            ],
            "containerStatuses": [
                {
                    "name": "peer",
                    "image": "rebound-peer:1",
                    "imageID": "x" * 100,
                    "restartCount": 0,
                    "state": {"running": {"startedAt": "2026-01-01T00:00:00Z"}},
                    "lastState": {},
                }
            ],
        },
    }


def test_only_what_the_operator_reads_is_kept() -> None:
    kept = trimmed("Pod", pod())
    assert kept == {
        "metadata": {
            "name": "s-server",
            "namespace": "ns",
            "uid": "u1",
            "resourceVersion": "1",
            "ownerReferences": [{"uid": "owner", "controller": True}],
        },
        "spec": {"nodeName": "n1"},
        "status": {
            "phase": "Pending",
            "podIP": "10.0.0.1",
            "conditions": [{"type": "PodScheduled", "status": "True"}],
            "containerStatuses": [{"state": {"running": {"startedAt": "2026-01-01T00:00:00Z"}}}],
        },
    }
    # What the state machine reads of the trimmed pod is what it reads of the whole one.
    from rebound_operator.lifecycle import PodView

    assert PodView.from_manifest(kept) == PodView.from_manifest(pod())
    configmap = {"metadata": {"name": "c", "namespace": "ns"}, "data": {"offer": "o"}}
    assert trimmed("ConfigMap", configmap) == configmap


def test_events_are_trusted_for_a_while_then_read_again() -> None:
    clock = Clock()
    cache = ChildCache(max_age_s=60, clock=clock)
    assert cache.get("Pod", "ns", "s-server") == (False, None)
    cache.seen("Pod", "ADDED", pod())
    known, obj = cache.get("Pod", "ns", "s-server")
    assert known and obj is not None and obj["status"]["phase"] == "Pending"
    clock.now += 30
    cache.seen("Pod", "MODIFIED", pod(phase="Running", rv="2"))
    clock.now += 59
    assert cache.get("Pod", "ns", "s-server")[1]["status"]["phase"] == "Running"  # type: ignore[index]
    clock.now += 2  # 61 s since the watch last spoke about it
    assert cache.get("Pod", "ns", "s-server") == (False, None)


def test_a_deletion_is_known_and_not_undone_by_an_older_response() -> None:
    clock = Clock()
    cache = ChildCache(max_age_s=60, clock=clock)
    cache.seen("Pod", "ADDED", pod())
    cache.seen("Pod", "DELETED", pod())
    assert cache.get("Pod", "ns", "s-server") == (True, None)
    cache.remember("Pod", pod())  # e.g. a read that started before the deletion
    assert cache.get("Pod", "ns", "s-server") == (True, None)
    clock.now += 61
    cache.remember("Pod", pod(rv="3"))  # nothing known any more: a read is the truth
    assert cache.get("Pod", "ns", "s-server")[1] is not None


def test_kinds_and_namespaces_do_not_mix_and_garbage_is_ignored() -> None:
    cache = ChildCache()
    cache.seen("Pod", "ADDED", pod())
    assert cache.get("ConfigMap", "ns", "s-server") == (False, None)
    assert cache.get("Pod", "other", "s-server") == (False, None)
    for bad in ({}, {"metadata": "x"}, {"metadata": {"name": 1, "namespace": "ns"}}):
        cache.seen("Pod", "ADDED", bad)
        cache.remember("Pod", bad)
    assert len(cache) == 1


def test_expired_entries_are_swept() -> None:
    clock = Clock()
    cache = ChildCache(max_age_s=60, clock=clock)
    for i in range(100):
        cache.seen("Pod", "ADDED", pod(name=f"old-{i}"))
    clock.now += 61
    for i in range(PURGE_EVERY - 100):
        cache.seen("Pod", "ADDED", pod(name=f"new-{i}"))
    assert len(cache) == PURGE_EVERY - 100


def test_a_recreated_object_replaces_the_memory_of_its_deleted_namesake() -> None:
    cache = ChildCache()
    cache.seen("Pod", "ADDED", pod(uid="old"))
    cache.seen("Pod", "DELETED", pod(uid="old"))
    cache.remember("Pod", pod(uid="new", rv="9"))  # the re-created session's pod, just created
    known, obj = cache.get("Pod", "ns", "s-server")
    assert known and obj is not None and obj["metadata"]["uid"] == "new"
    cache.remember("Pod", pod(uid="new", rv="8", phase="Pending"))  # an older read: ignored
    cache.seen("Pod", "MODIFIED", pod(uid="new", rv="10", phase="Running"))
    assert cache.get("Pod", "ns", "s-server")[1]["status"]["phase"] == "Running"  # type: ignore[index]


class FakeResponse:
    def __init__(self, obj: dict[str, Any]) -> None:
        self.data = json.dumps(obj).encode()


class FakeCore:
    """The two reads `Cluster.observe` makes, answering what the API server holds now."""

    def __init__(self, objects: dict[str, dict[str, Any]]) -> None:
        self.objects = objects
        self.reads: list[str] = []

    def _read(self, name: str, namespace: str, **_: Any) -> FakeResponse:
        self.reads.append(name)
        return FakeResponse(self.objects[name])

    read_namespaced_pod = _read
    read_namespaced_config_map = _read


def configmap(name: str, data: dict[str, str], rv: str) -> dict[str, Any]:
    return {
        "metadata": {
            "name": name,
            "namespace": "ns",
            "uid": f"u-{name}",
            "resourceVersion": rv,
            "ownerReferences": [{"uid": "owner", "controller": True}],
        },
        "data": data,
    }


def test_a_fresh_observation_reads_past_a_stale_cache() -> None:
    """The verdict's read: the cache still holds the server ConfigMap without its summary
    (its watch event not arrived yet), the API server already has it."""
    stale = configmap("s-server-signaling", {"offer": "o"}, "1")
    now = configmap("s-server-signaling", {"offer": "o", "summary": "{}"}, "2")
    objects = {
        "s-server": pod("s-server", "Succeeded"),
        "s-client": pod("s-client", "Succeeded", uid="u2"),
        "s-server-signaling": now,
        "s-client-signaling": configmap("s-client-signaling", {"answer": "a"}, "1"),
    }
    cache = ChildCache()
    cache.seen("ConfigMap", "MODIFIED", stale)
    cluster = Cluster()
    core = FakeCore(objects)
    cluster.core = core
    cached = cluster.observe("s", "ns", "owner", cache)
    assert cached.server_data == {"offer": "o"}
    assert "s-server-signaling" not in core.reads
    fresh = cluster.observe("s", "ns", "owner", cache, fresh=True)
    assert fresh.server_data == {"offer": "o", "summary": "{}"}
    assert sorted(core.reads).count("s-server-signaling") == 1
