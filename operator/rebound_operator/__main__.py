"""`python -m rebound_operator` / `rebound-operator`: run the operator."""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import socket
import sys
from datetime import UTC, datetime
from typing import Any, NoReturn

import kopf
from kopf._core.engines.peering import Identity
from pydantic import ValidationError
from pydantic_settings import SettingsError

from rebound_operator import __version__
from rebound_operator.logs import quiet_routine_successes
from rebound_operator.settings import DEFAULT_PEER_IMAGE, ListenAddress, OperatorSettings
from rebound_operator.spec import (
    DEFAULT_PENDING_TIMEOUT,
    MAX_PENDING_TIMEOUT,
    MIN_PENDING_TIMEOUT,
)

PROG = "python -m rebound_operator"
EXIT_USAGE = 2
FLAGS = {
    "namespaces": "--namespace",
    "peer_image": "--peer-image",
    "allowed_images": "--allowed-image",
    "image_pull_policy": "--image-pull-policy",
    "log_format": "--log-format",
    "liveness": "--liveness",
    "peering": "--peering",
    "priority": "--priority",
    "pending_timeout_seconds": "--pending-timeout",
    "verbose": "--verbose",
}


def env_name(field: str) -> str:
    """The environment variable of a setting (REBOUND_ + its name in capitals)."""
    return f"REBOUND_{field.upper()}"


class UsageError(Exception):
    """A bad flag or environment value; the message is the whole user-facing line."""


class OperatorArgumentParser(argparse.ArgumentParser):
    """argparse that reports a bad flag as one `prog: error: ...` line and exits 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def build_parser() -> OperatorArgumentParser:
    """Every flag defaults to None (= not given): the environment, then the built-in default
    applies. The help shows each built-in default, bound and environment variable."""
    parser = OperatorArgumentParser(
        prog=PROG,
        description="Rebound operator: runs BallSession custom resources (rebound.dev). "
        "Every flag can also be set with its REBOUND_* environment variable; flags win.",
    )
    add = parser.add_argument
    add(
        "--namespace",
        "-n",
        action="append",
        dest="namespaces",
        metavar="NS",
        help="watch only this namespace (repeatable, at most 256; env REBOUND_NAMESPACES as a "
        "JSON list, e.g. '[\"team-a\"]'). Default: all namespaces (cluster-wide)",
    )
    add(
        "--peer-image",
        metavar="IMAGE",
        help=f"image of peers whose spec has no image (default {DEFAULT_PEER_IMAGE}; "
        "env REBOUND_PEER_IMAGE)",
    )
    add(
        "--allowed-image",
        action="append",
        dest="allowed_images",
        metavar="PATTERN",
        help="also allow spec.image values matching this shell-style pattern, e.g. "
        "'registry.example/rebound-peer:*' (repeatable, at most 64; env "
        "REBOUND_ALLOWED_IMAGES as a JSON list). Default: only the --peer-image; any other "
        "image ends the session Failed/ImageNotAllowed",
    )
    add(
        "--image-pull-policy",
        choices=["Always", "IfNotPresent", "Never"],
        help="the peers' imagePullPolicy (default IfNotPresent; env REBOUND_IMAGE_PULL_POLICY)",
    )
    add(
        "--log-format",
        choices=["plain", "json"],
        help="plain: time, logger, level, [namespace/name] message; json: one object per "
        "line (default plain; env REBOUND_LOG_FORMAT)",
    )
    add(
        "--liveness",
        metavar="URL",
        help="liveness probe URL; Prometheus metrics are served at /metrics on the same port; "
        "'' serves neither (default http://0.0.0.0:8080/healthz; env REBOUND_LIVENESS)",
    )
    add(
        "--peering",
        action="store_true",
        default=None,
        help="coordinate several replicas with kopf peering; needs kopf's peering CRD "
        "(default off: run one replica; env REBOUND_PEERING)",
    )
    add(
        "--priority",
        type=int,
        metavar="N",
        help="peering priority, replicas must differ (default 0; env REBOUND_PRIORITY)",
    )
    add(
        "--pending-timeout",
        type=int,
        dest="pending_timeout_seconds",
        metavar="S",
        help="fail a session whose pod is not running after S seconds, unless its spec "
        "sets pendingTimeoutSeconds; also the longest wait for a deleted session's children "
        f"({MIN_PENDING_TIMEOUT}..{MAX_PENDING_TIMEOUT}; default {DEFAULT_PENDING_TIMEOUT}; "
        "env REBOUND_PENDING_TIMEOUT_SECONDS)",
    )
    add(
        "--verbose",
        "-v",
        action="store_true",
        default=None,
        help="debug logging, and a line for every handled watch event (default off; env "
        "REBOUND_VERBOSE)",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    return parser


def _describe(exc: ValidationError, given: dict[str, Any]) -> str:
    """One line naming the flag or environment variable at fault and what is wrong."""
    first = exc.errors()[0]
    loc = first["loc"]
    field = str(loc[0]) if loc else ""
    message = str(first["msg"]).removeprefix("Value error, ")
    if first["type"] == "string_pattern_mismatch" and field == "namespaces":
        message = "not a namespace name (a lowercase RFC 1123 label)"
    value = first.get("input")
    if field in given:
        return f"{FLAGS.get(field, field)} {value}: {message}"
    return f"{env_name(field)}={value}: {message}" if field else message


def load_settings(args: argparse.Namespace) -> OperatorSettings:
    """Flags over REBOUND_* environment over defaults; UsageError naming the culprit."""
    given = {k: v for k, v in vars(args).items() if v is not None}
    try:
        return OperatorSettings(**given)
    except ValidationError as exc:
        raise UsageError(_describe(exc, given)) from None
    except SettingsError as exc:
        found = re.search(r'field "(\w+)"', str(exc))
        name = env_name(found.group(1)) if found else "a REBOUND_* variable"
        raise UsageError(f"{name}: not valid JSON (a JSON list such as '[\"a\"]')") from None


def identity() -> Identity:
    """Who this operator is (kopf's peering and logs): the pod name from POD_ID, else the
    host name. Unlike kopf's default it never asks for the user name, which fails under a
    UID without a passwd entry (as in the operator image)."""
    pod = os.environ.get("POD_ID")
    if pod:
        return Identity(pod)
    started = datetime.now(UTC).strftime("%Y%m%d%H%M%S")
    return Identity(f"rebound-operator@{socket.gethostname()}/{started}/{os.getpid()}")


def main(argv: list[str] | None = None) -> int:
    """Parse flags, configure logging, run kopf until SIGINT/SIGTERM."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        settings = load_settings(args)
    except UsageError as exc:
        parser.error(str(exc))
    if settings.log_format == "json":
        kopf.configure(verbose=settings.verbose, log_format=kopf.LogFormat.JSON)
    else:
        kopf.configure(verbose=settings.verbose, log_format=kopf.LogFormat.FULL, log_prefix=True)
    quiet_routine_successes(settings.verbose)
    import rebound_operator.handlers  # noqa: F401  (registers the handlers)

    try:
        asyncio.run(operate(settings))
    except ListenError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except asyncio.CancelledError:
        pass
    return 0


class ListenError(Exception):
    """The liveness/metrics port cannot be served (e.g. taken); one line for the user."""


async def operate(settings: OperatorSettings) -> None:
    """Serve the liveness probe and /metrics (one port), then run kopf until it stops."""
    from rebound_operator import serving

    runner = None
    if settings.liveness:
        try:
            runner = await serving.start(ListenAddress.parse(settings.liveness))
        except OSError as exc:
            raise ListenError(
                f"--liveness {settings.liveness}: cannot listen: {exc.strerror or exc}"
            ) from None
    try:
        await kopf.operator(
            standalone=not settings.peering,
            priority=settings.priority,
            namespaces=settings.namespaces,
            clusterwide=not settings.namespaces,
            liveness_endpoint=None,  # served above, with /metrics
            identity=identity(),
            memo=kopf.Memo(settings=settings),
        )
    finally:
        if runner is not None:
            await runner.cleanup()


if __name__ == "__main__":
    sys.exit(main())
