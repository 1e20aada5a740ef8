"""Whose object is this? Pure rules for objects found at a child's fixed name.

The operator only ever reads, judges by or deletes an object whose *controller* owner
reference carries the UID of the session at hand. An object at one of its fixed names that
belongs to someone else is either on its way out (it is being deleted, or its controller was
a BallSession that no longer exists, so the garbage collector will remove it: wait for it),
or a stranger's (a conflict: never touched).
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from typing import Any

from rebound_operator import GROUP, KIND


class Holder(enum.Enum):
    """Who holds a name the session wants."""

    OURS = "ours"
    """Controlled by this very session (same UID): adopt it."""
    LEAVING = "leaving"
    """Being deleted, or left behind by a deleted BallSession: wait until it is gone."""
    STRANGER = "stranger"
    """Anyone else's: a conflict, never touched."""


def _metadata(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    meta = obj.get("metadata")
    return meta if isinstance(meta, Mapping) else {}


def controller_ref(obj: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The owner reference marked `controller: true`, if any."""
    refs = _metadata(obj).get("ownerReferences")
    for ref in refs if isinstance(refs, list) else []:
        if isinstance(ref, Mapping) and ref.get("controller") is True:
            return ref
    return None


def owned_by(obj: Mapping[str, Any] | None, uid: str) -> bool:
    """True if `obj` exists and its controller is the object with this UID."""
    if obj is None or not uid:
        return False
    ref = controller_ref(obj)
    return ref is not None and ref.get("uid") == uid


def is_session_ref(ref: Mapping[str, Any]) -> bool:
    """The owner reference points at a BallSession."""
    api_version = str(ref.get("apiVersion") or "")
    return ref.get("kind") == KIND and api_version.split("/")[0] == GROUP


def describe_owner(obj: Mapping[str, Any]) -> str:
    """`controlled by BallSession web`, or `not owned by any controller`."""
    ref = controller_ref(obj)
    if ref is None:
        return "not owned by any controller"
    return f"controlled by {ref.get('kind', '?')} {ref.get('name', '?')}"


def classify(
    obj: Mapping[str, Any],
    uid: str,
    read_owner: Callable[[str], Mapping[str, Any] | None],
) -> Holder:
    """Who holds `obj`, from the point of view of the session with UID `uid`.

    `read_owner(name)` returns the BallSession of that name in the object's namespace, or
    None if there is none; it is called only when the controller is another BallSession.
    """
    if owned_by(obj, uid):
        return Holder.OURS
    if _metadata(obj).get("deletionTimestamp"):
        return Holder.LEAVING
    ref = controller_ref(obj)
    if ref is None or not is_session_ref(ref):
        return Holder.STRANGER
    owner = read_owner(str(ref.get("name") or ""))
    if owner is None:
        return Holder.LEAVING
    meta = _metadata(owner)
    if meta.get("uid") != ref.get("uid") or meta.get("deletionTimestamp"):
        return Holder.LEAVING
    return Holder.STRANGER
