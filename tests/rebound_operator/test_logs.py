"""The operator's log: kopf's per-event success lines go, what happened to sessions stays."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import pytest
from rebound_operator.logs import (
    KOPF_OBJECT_LOGGER,
    DropRoutineSuccesses,
    event_level,
    is_routine_success,
    object_ref,
    quiet_routine_successes,
)


def record(message: str, level: int = logging.INFO) -> logging.LogRecord:
    return logging.LogRecord(KOPF_OBJECT_LOGGER, level, __file__, 1, message, None, None)


@pytest.fixture
def kopf_objects() -> Iterator[logging.Logger]:
    """The kopf.objects logger without our filter (an earlier test's main() may have added it)."""
    logger = logging.getLogger(KOPF_OBJECT_LOGGER)
    before = list(logger.filters)
    logger.filters[:] = [f for f in before if not isinstance(f, DropRoutineSuccesses)]
    yield logger
    logger.filters[:] = before


def test_only_kopfs_info_success_lines_are_routine() -> None:
    assert is_routine_success(record("Handler 'peer_pod_changed' succeeded."))
    assert not is_routine_success(record("Handler 'peer_pod_changed' succeeded.", logging.DEBUG))
    assert not is_routine_success(record("Handler 'session_created' failed temporarily: x"))
    assert not is_routine_success(record("Handler 'x' succeeded. And something else"))
    assert not is_routine_success(record("BallSession ns/a: Completed: mean error 0.02 px"))


def test_without_verbose_the_success_lines_are_dropped_and_the_rest_kept(
    kopf_objects: logging.Logger, caplog: pytest.LogCaptureFixture
) -> None:
    quiet_routine_successes(verbose=False)
    quiet_routine_successes(verbose=False)
    assert sum(isinstance(f, DropRoutineSuccesses) for f in kopf_objects.filters) == 1
    with caplog.at_level(logging.DEBUG, logger=KOPF_OBJECT_LOGGER):
        kopf_objects.info("Handler 'signaling_changed' succeeded.")
        kopf_objects.warning("Handler 'session_created' failed temporarily: 503")
    assert [r.getMessage() for r in caplog.records] == [
        "Handler 'session_created' failed temporarily: 503"
    ]


def test_verbose_keeps_every_line(
    kopf_objects: logging.Logger, caplog: pytest.LogCaptureFixture
) -> None:
    quiet_routine_successes(verbose=True)
    with caplog.at_level(logging.DEBUG, logger=KOPF_OBJECT_LOGGER):
        kopf_objects.info("Handler 'signaling_changed' succeeded.")
    assert [r.getMessage() for r in caplog.records] == ["Handler 'signaling_changed' succeeded."]


def test_warning_events_are_logged_as_warnings() -> None:
    assert event_level("Warning") == logging.WARNING
    assert event_level("Normal") == logging.INFO


def test_a_sessions_line_names_its_object_in_both_log_formats() -> None:
    from kopf._core.actions.loggers import LogFormat, make_formatter

    body = {
        "apiVersion": "rebound.dev/v1alpha1",
        "kind": "BallSession",
        "metadata": {"name": "demo", "namespace": "team-a", "uid": "u-1"},
    }
    args = ("Completed", "Succeeded: 150/150 frames matched")
    line = logging.LogRecord("rebound_operator", logging.INFO, __file__, 1, "%s: %s", args, None)
    line.k8s_ref = object_ref(body)
    # as `python -m rebound_operator` configures kopf for --log-format plain and json
    plain = make_formatter(LogFormat.FULL, log_prefix=True).format(line)
    assert plain.endswith("[team-a/demo] Completed: Succeeded: 150/150 frames matched")
    as_json = json.loads(make_formatter(LogFormat.JSON).format(line))
    assert as_json["message"] == "Completed: Succeeded: 150/150 frames matched"
    assert as_json["object"] == object_ref(body)
    assert (as_json["object"]["kind"], as_json["object"]["name"]) == ("BallSession", "demo")
