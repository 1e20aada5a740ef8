"""`python -m rebound_operator` / `rebound-operator`: run the operator."""

from __future__ import annotations

import argparse
import sys

import kopf

from rebound_operator.settings import OperatorSettings


def build_parser(defaults: OperatorSettings) -> argparse.ArgumentParser:
    """Flags override REBOUND_* environment variables."""
    parser = argparse.ArgumentParser(
        prog="python -m rebound_operator",
        description="Rebound operator: runs BallSession custom resources (rebound.dev).",
    )
    parser.add_argument(
        "--namespace",
        "-n",
        action="append",
        dest="namespaces",
        metavar="NS",
        help="watch this namespace (repeatable); default: all namespaces "
        "(env REBOUND_NAMESPACES, a JSON list)",
    )
    parser.add_argument(
        "--peer-image",
        default=defaults.peer_image,
        help=f"image for peers without spec.image (default {defaults.peer_image})",
    )
    parser.add_argument(
        "--image-pull-policy",
        default=defaults.image_pull_policy,
        choices=["Always", "IfNotPresent", "Never"],
    )
    parser.add_argument("--log-format", default=defaults.log_format, choices=["plain", "json"])
    parser.add_argument(
        "--liveness",
        default=defaults.liveness,
        help="kopf liveness endpoint, '' to disable (default %(default)s)",
    )
    parser.add_argument(
        "--peering",
        action="store_true",
        default=defaults.peering,
        help="coordinate several replicas with kopf peering (needs its CRD)",
    )
    parser.add_argument(
        "--priority",
        type=int,
        default=defaults.priority,
        help="peering priority; replicas must differ",
    )
    parser.add_argument(
        "--pending-timeout",
        type=int,
        default=defaults.pending_timeout_seconds,
        dest="pending_timeout_seconds",
        metavar="S",
        help="fail a session whose pod is not running after S seconds",
    )
    parser.add_argument("--verbose", "-v", action="store_true", default=defaults.verbose)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Parse flags, configure logging, run kopf until SIGINT/SIGTERM."""
    defaults = OperatorSettings()
    args = build_parser(defaults).parse_args(argv)
    values = {k: v for k, v in vars(args).items() if v is not None}
    settings = OperatorSettings.model_validate({**defaults.model_dump(), **values})
    kopf.configure(
        verbose=settings.verbose,
        log_format=kopf.LogFormat.JSON if settings.log_format == "json" else kopf.LogFormat.PLAIN,
    )
    import rebound_operator.handlers  # noqa: F401  (registers the handlers)

    kopf.run(
        standalone=not settings.peering,
        priority=settings.priority,
        namespaces=settings.namespaces,
        clusterwide=not settings.namespaces,
        liveness_endpoint=settings.liveness or None,
        memo=kopf.Memo(settings=settings),
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
