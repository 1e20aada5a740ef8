"""`python -m rebound_operator.report [-n NS] NAME [-o REPORT.html]`: the report of a BallSession.

Also the kubectl plugin `kubectl rebound report NAME` (`make install-kubectl-plugin`).

Reads the per-frame series the session's server stored in its own signaling ConfigMap
(`<NAME>-server-signaling`, `data.series`: only the server's ServiceAccount may write it),
only if that ConfigMap is controlled by this very BallSession, checks it as untrusted input
(`series_check`), and renders the same self-contained HTML report as
`python -m peers.report` (`--jsonl PATH` also saves the series itself). Needs `get` on
BallSessions and ConfigMaps in the namespace; the login is kubectl's (in-cluster, else
`--kubeconfig`/`$KUBECONFIG`/`~/.kube/config`, and its current context's namespace).
Exit codes: 0 written, 1 nothing usable (no such session, no series yet, malformed),
2 bad usage.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, NoReturn, cast

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException
from urllib3.exceptions import HTTPError

from rebound_operator import GROUP, PLURAL, VERSION
from rebound_operator.children import Names
from rebound_operator.kube import api_message
from rebound_operator.ownership import owned_by
from rebound_operator.series_check import SERIES_KEY, SeriesReading, check_series

PROG = "python -m rebound_operator.report"
EXIT_FAILED = 1
EXIT_USAGE = 2


class ReportError(Exception):
    """Nothing to report; the message is the whole user-facing line."""


class Parser(argparse.ArgumentParser):
    """argparse that reports a bad flag as one `prog: error: ...` line and exits 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def build_parser(prog: str = PROG) -> Parser:
    """The command line (the kubectl plugin passes `report` first, which is accepted)."""
    parser = Parser(
        prog=prog,
        description="Render the report of a BallSession from the per-frame series its server "
        "stored in its own signaling ConfigMap.",
    )
    parser.add_argument("name", metavar="NAME", help="the BallSession")
    parser.add_argument(
        "-n", "--namespace", help="its namespace (default: the kubeconfig context's)"
    )
    parser.add_argument(
        "-o",
        "--output",
        type=Path,
        metavar="PATH",
        help="the HTML report to write (default: NAME-report.html)",
    )
    parser.add_argument(
        "--jsonl", type=Path, metavar="PATH", help="also write the series as JSON Lines"
    )
    parser.add_argument("--kubeconfig", help="kubeconfig file (default: $KUBECONFIG)")
    return parser


def connect(kubeconfig: str | None) -> tuple[client.ApiClient, str]:
    """An API client and the default namespace, as kubectl would log in."""
    try:
        config.load_incluster_config()
        namespace_file = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
        namespace = namespace_file.read_text().strip() if namespace_file.exists() else "default"
        return client.ApiClient(), namespace
    except config.ConfigException:
        pass
    try:
        _, context = config.list_kube_config_contexts(config_file=kubeconfig)
        api = config.new_client_from_config(config_file=kubeconfig)
    except (config.ConfigException, OSError, TypeError) as exc:
        raise ReportError(f"no usable kubeconfig: {exc}") from None
    namespace = ((context or {}).get("context") or {}).get("namespace") or "default"
    return api, str(namespace)


def fetch_series(api: client.ApiClient, namespace: str, name: str) -> str:
    """The `data.series` text of the session's own server ConfigMap (ReportError if there is
    none, or the ConfigMap is not this BallSession's)."""
    custom = client.CustomObjectsApi(api)
    core = client.CoreV1Api(api)
    try:
        raw: Any = custom.get_namespaced_custom_object(
            GROUP, VERSION, namespace, PLURAL, name, _preload_content=False
        )
        session = json.loads(raw.data)
    except ApiException as exc:
        if exc.status == 404:
            raise ReportError(f"BallSession {namespace}/{name} not found") from None
        why = api_message(exc)
        raise ReportError(f"cannot read BallSession {namespace}/{name}: {why}") from None
    uid = str((session.get("metadata") or {}).get("uid") or "")
    configmap = Names.of(name).configmap("server")
    try:
        raw = core.read_namespaced_config_map(configmap, namespace, _preload_content=False)
        found: dict[str, Any] = json.loads(cast(Any, raw).data)
    except ApiException as exc:
        if exc.status == 404:
            raise ReportError(
                f"ConfigMap {namespace}/{configmap} not found: the session has no server yet"
            ) from None
        why = api_message(exc)
        raise ReportError(f"cannot read ConfigMap {namespace}/{configmap}: {why}") from None
    if not owned_by(found, uid):
        raise ReportError(f"ConfigMap {namespace}/{configmap} is not BallSession {name}'s")
    text = (found.get("data") or {}).get(SERIES_KEY)
    if text is None:
        phase = (session.get("status") or {}).get("phase") or "Pending"
        raise ReportError(
            f"BallSession {namespace}/{name} ({phase}) has no series yet: the server stores "
            "it when the session ends"
        )
    return str(text)


def render(reading: SeriesReading, output: Path, title: str) -> None:
    """Write the HTML report of a checked series: `peers.report`, the same renderer as for a
    local run (it needs the `peer` and `report` extras: OpenCV, matplotlib)."""
    try:
        from peers import report
    except ImportError as exc:
        raise ReportError(
            f"rendering needs {exc.name or 'the peer extra'}: pip install 'rebound[peer,report]'"
        ) from None
    missing = report.matplotlib_missing()
    if missing:
        raise ReportError(missing)
    assert reading.series is not None
    try:
        report.write_report(reading.series, output, title=title)
    except report.ReportError as exc:
        raise ReportError(str(exc)) from None


def run(argv: list[str] | None = None, prog: str = PROG) -> int:
    """Parse, fetch, check, write. Returns the exit code."""
    args = build_parser(prog).parse_args(argv)
    try:
        api, default_namespace = connect(args.kubeconfig)
        namespace = args.namespace or default_namespace
        try:
            text = fetch_series(api, namespace, args.name)
        except (HTTPError, OSError) as exc:
            raise ReportError(f"cannot reach the API server: {exc}") from None
        reading = check_series(text)
        if reading.problem is not None:
            raise ReportError(
                f"the series of BallSession {namespace}/{args.name} is unusable: {reading.problem}"
            )
        if args.jsonl is not None:
            args.jsonl.write_text(text)
        output = args.output or Path(f"{args.name}-report.html")
        render(reading, output, title=f"BallSession {namespace}/{args.name}")
    except ReportError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except OSError as exc:
        print(f"{prog}: error: cannot write: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_FAILED
    total = reading.frames_total
    print(f"wrote {output} ({reading.frames} of {total} frames)")
    return 0


PLUGIN_FLAG = "--kubectl-plugin"
"""First argument when run as the kubectl plugin `kubectl-rebound` (make install-kubectl-plugin)."""


def main(argv: list[str] | None = None) -> int:
    """`python -m rebound_operator.report`; also the kubectl plugin `kubectl rebound report`."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] != [PLUGIN_FLAG]:
        return run(argv)
    command = argv[1:2]
    if command != ["report"]:
        given = f"unknown command {command[0]!r}" if command else "a command is needed"
        usage = "kubectl rebound report NAME [-n NS] [-o PATH]"
        print(f"kubectl rebound: error: {given}; usage: {usage}", file=sys.stderr)
        return EXIT_USAGE
    return run(argv[2:], prog="kubectl rebound report")


if __name__ == "__main__":
    sys.exit(main())
