"""`python -m localcluster up|down|status|build|preflight` (what `make cluster-up/-down` run)."""

from __future__ import annotations

import argparse
import sys

from localcluster import build, cluster, controlplane
from localcluster.controlplane import ClusterError
from localcluster.layout import Layout


def _say(message: str) -> None:
    print(f"localcluster: {message}", flush=True)


def main(argv: list[str] | None = None) -> int:
    """Run one command; a failure is one `localcluster: error: ...` line and exit 1."""
    parser = argparse.ArgumentParser(prog="python -m localcluster")
    parser.add_argument("command", choices=["up", "down", "status", "build", "preflight"])
    parser.add_argument("--no-install", action="store_true", help="up: do not install Rebound")
    args = parser.parse_args(argv)
    layout = Layout.default()
    try:
        if args.command == "build":
            _say(f"binaries in {build.build()}")
        elif args.command == "preflight":
            problem = cluster.install_packages(_say) or cluster.preflight(layout)
            if problem:
                raise ClusterError(problem)
        elif args.command == "up":
            cluster.up(layout, _say, install=not args.no_install)
            print(f"export KUBECONFIG={layout.kubeconfig}")
            print(f"export PATH={build.bin_dir()}:$PATH   # kubectl {build.KUBERNETES_VERSION}")
        elif args.command == "down":
            cluster.down(layout, _say)
        else:
            for component in controlplane.daemons(layout):
                pid = controlplane.read_pid(layout, component)
                state = "running" if controlplane.alive(pid) else "stopped"
                _say(f"{component:24} {state}" + (f" (pid {pid})" if pid else ""))
    except ClusterError as exc:
        print(f"localcluster: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
