"""`python -m kindnode image|up|down|kind|engine|host` (what `make kind-*` and `make e2e` run).

- `image`: build (or reuse) the node image `rebound-kind-node:<version>`;
- `up`: the kind cluster from that image (or `--image`), two nodes, ready for workloads;
- `down`: delete it;
- `kind`: print the path of the kind CLI built here (building it first if needed);
- `engine`: install the packages Docker needs, configure dockerd for this host, start it;
- `host`: what this host needs handled for kind, and what cannot work.

A failure is one `kindnode: error: ...` line and exit 1.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from kindnode import build, cluster, engine, gobuild, host
from localcluster import build as k8s
from localcluster import packages


def _say(message: str) -> None:
    print(f"kindnode: {message}", flush=True)


class Failure(RuntimeError):
    """A command failed; the message is its one line."""


def _engine() -> None:
    problem = packages.ensure(("docker", "dockerd", "runc", "iptables"), _say)
    if problem:
        raise Failure(problem)
    try:
        engine.ensure(_say)
    except engine.EngineError as error:
        raise Failure(str(error)) from None


def _kind(given: str | None) -> Path:
    if given:
        return Path(given)
    try:
        return gobuild.install(gobuild.kind_tool(), build.log_file(), _say)
    except gobuild.GoBuildError as error:
        raise Failure(str(error)) from None


def _image() -> str:
    try:
        return build.node_image(_say)
    except build.KindBuildError as error:
        raise Failure(str(error)) from None


def run(args: argparse.Namespace) -> None:
    """Run one command (Failure on error)."""
    if args.command == "host":
        for line in host.notes():
            _say(line)
        problems = host.problems()
        if problems:
            raise Failure("; ".join(problems))
        _say("kind can run here")
    elif args.command == "engine":
        _engine()
    elif args.command == "kind":
        print(_kind(args.kind))
    elif args.command == "image":
        print(_image())
    elif args.command == "up":
        found = host.problems()
        if found:
            raise Failure(found[0])
        if args.image:
            _engine()
            image = args.image
        else:
            image = _image()
        try:
            cluster.up(
                _kind(args.kind),
                args.name,
                image,
                k8s.bin_dir(),
                _say,
                workers=args.workers,
                restrict_oom_score_adj=bool(host.lacking_capabilities()),
            )
        except cluster.KindClusterError as error:
            raise Failure(str(error)) from None
        print(f"export KUBECONFIG={cluster.KUBECONFIG}")
    elif args.command == "down":
        try:
            cluster.down(_kind(args.kind), args.name, _say)
        except cluster.KindClusterError as error:
            raise Failure(str(error)) from None


def main(argv: list[str] | None = None) -> int:
    """Parse the command line, run the command; exit 1 with one line on failure."""
    parser = argparse.ArgumentParser(prog="python -m kindnode")
    parser.add_argument("command", choices=["image", "up", "down", "kind", "engine", "host"])
    parser.add_argument("--name", default="rebound", help="kind cluster name")
    parser.add_argument("--image", default="", help="up: this node image instead of ours")
    parser.add_argument("--kind", default="", help="this kind CLI instead of the one built here")
    parser.add_argument("--workers", type=int, default=1, help="up: worker nodes")
    args = parser.parse_args(argv)
    try:
        run(args)
    except Failure as error:
        print(f"kindnode: error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
