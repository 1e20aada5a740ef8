"""The operator's log: one line per thing that happened to a session, not per watch event.

kopf logs "Handler 'x' succeeded." at INFO for every Pod and ConfigMap event the operator
follows (several per second per running session). Without --verbose those lines are dropped;
handler retries, warnings and errors stay, and every Event the operator posts is also logged,
about its object as kopf's own lines are (`[namespace/name]` prefix in plain format, the
`object` field in JSON).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from typing import Any

KOPF_OBJECT_LOGGER = "kopf.objects"
_ROUTINE_SUCCESS = re.compile(r"Handler '[^']+' succeeded\.")


def is_routine_success(record: logging.LogRecord) -> bool:
    """kopf's INFO line saying that a handler succeeded (nothing changed that needs a line)."""
    return (
        record.levelno == logging.INFO
        and isinstance(record.msg, str)
        and _ROUTINE_SUCCESS.fullmatch(record.msg) is not None
    )


class DropRoutineSuccesses(logging.Filter):
    """A logging filter that drops kopf's per-event "Handler 'x' succeeded." lines."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not is_routine_success(record)


def quiet_routine_successes(verbose: bool) -> None:
    """Unless `verbose`, drop kopf's per-event handler-success lines (see the module doc)."""
    if verbose:
        return
    kopf_objects = logging.getLogger(KOPF_OBJECT_LOGGER)
    if not any(isinstance(f, DropRoutineSuccesses) for f in kopf_objects.filters):
        kopf_objects.addFilter(DropRoutineSuccesses())


def event_level(event_type: str) -> int:
    """The log level of a posted Kubernetes Event: WARNING for "Warning", else INFO."""
    return logging.WARNING if event_type == "Warning" else logging.INFO


def object_ref(body: Mapping[str, Any]) -> dict[str, Any]:
    """The `k8s_ref` log-record extra kopf's formatters read: who a line is about."""
    meta = body.get("metadata") or {}
    return {
        "apiVersion": body.get("apiVersion"),
        "kind": body.get("kind"),
        "name": meta.get("name"),
        "uid": meta.get("uid"),
        "namespace": meta.get("namespace"),
    }
