from typing import Any

import pytest
from rebound_operator.ownership import Holder, classify, describe_owner, owned_by

UID = "uid-now"


def obj(*refs: dict[str, Any], deleting: bool = False) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": "web-server", "ownerReferences": list(refs)}
    if deleting:
        meta["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    return {"metadata": meta}


def session(uid: str, name: str = "web", controller: bool = True) -> dict[str, Any]:
    return {
        "apiVersion": "rebound.dev/v1alpha1",
        "kind": "BallSession",
        "name": name,
        "uid": uid,
        "controller": controller,
    }


REPLICASET = {
    "apiVersion": "apps/v1",
    "kind": "ReplicaSet",
    "name": "rs",
    "uid": "x",
    "controller": True,
}
ALIVE_OLD = {"metadata": {"name": "web", "uid": "uid-old"}}


@pytest.mark.parametrize(
    ("found", "owner", "expected"),
    [
        (obj(session(UID)), None, Holder.OURS),
        # an unowned pod, a ReplicaSet's pod: strangers, whatever their state
        (obj(), None, Holder.STRANGER),
        (obj(REPLICASET), None, Holder.STRANGER),
        # our UID, but not as the controller: not ours
        (obj(session(UID, controller=False)), None, Holder.STRANGER),
        # a stranger's object that is being deleted will free the name
        (obj(REPLICASET, deleting=True), None, Holder.LEAVING),
        # left behind by a deleted BallSession: the garbage collector removes it
        (obj(session("uid-old")), None, Holder.LEAVING),
        # ... or by an older session of the same name
        (obj(session("uid-old")), {"metadata": {"name": "web", "uid": "uid-now"}}, Holder.LEAVING),
        # ... or by a session being deleted right now
        (
            obj(session("uid-old")),
            {"metadata": {"name": "web", "uid": "uid-old", "deletionTimestamp": "t"}},
            Holder.LEAVING,
        ),
        # another live BallSession's child: a conflict
        (obj(session("uid-old")), ALIVE_OLD, Holder.STRANGER),
    ],
)
def test_classify(found: dict[str, Any], owner: dict[str, Any] | None, expected: Holder) -> None:
    asked: list[str] = []

    def read_owner(name: str) -> dict[str, Any] | None:
        asked.append(name)
        return owner

    assert classify(found, UID, read_owner) is expected
    assert asked in ([], ["web"])


def test_owned_by_needs_the_controller_reference() -> None:
    assert owned_by(obj(session(UID)), UID)
    assert not owned_by(obj(session(UID, controller=False)), UID)
    assert not owned_by(obj(), UID)
    assert not owned_by(None, UID)
    assert not owned_by(obj(session("")), "")
    assert not owned_by({"metadata": {"ownerReferences": "junk"}}, UID)


def test_describe_owner() -> None:
    assert describe_owner(obj()) == "not owned by any controller"
    assert describe_owner(obj(REPLICASET)) == "controlled by ReplicaSet rs"
