"""`make bench-operator`: 100 BallSessions created at once against the emulated API server,
and against the real one when `make cluster-up` ran (see bench/cluster.py).

The real operator (a `python -m rebound_operator` process) reconciles them; no kubelet runs,
so the pods stay Pending. Measures: time until every session has all its children and a
status, per-session latency from creation to children / to first status, and the operator's
peak RSS. Prints a Markdown table; asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import psutil
from kubernetes import client

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from kube_harness import Emulator

from bench.machine import describe
from bench.progress import Every, say

NS = "bench"
CHILD_KINDS = 11
"""Children per session: 2 ConfigMaps, 2 ServiceAccounts, 2 Roles, 2 RoleBindings, 1
NetworkPolicy, 2 Pods."""


def _snapshot(emulator: Emulator) -> tuple[dict[str, int], set[str]]:
    counts: dict[str, int] = {}
    with_status: set[str] = set()
    for resource, obj in emulator.all_objects():
        meta = obj.get("metadata") or {}
        session = (meta.get("labels") or {}).get("rebound.dev/session")
        if session:
            counts[session] = counts.get(session, 0) + 1
        elif resource.plural == "ballsessions" and (obj.get("status") or {}).get("phase"):
            with_status.add(meta["name"])
    return counts, with_status


def proc_times(pid: int) -> tuple[float, float]:
    """User and system CPU seconds of a process."""
    times = psutil.Process(pid).cpu_times()
    return times.user, times.system


def run(sessions: int, timeout: float) -> dict[str, Any]:
    """Create `sessions` BallSessions at once and time the operator's reaction."""
    say("emulated API server: starting kmock and the operator")
    emulator = Emulator(NS)
    with tempfile.TemporaryDirectory() as tmp:
        kubeconfig = emulator.write_kubeconfig(Path(tmp) / "kubeconfig")
        operator = subprocess.Popen(
            [sys.executable, "-m", "rebound_operator", "-n", NS, "--liveness", ""],
            env={**os.environ, "KUBECONFIG": str(kubeconfig)},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            time.sleep(3)  # let kopf start its watches
            api = client.CustomObjectsApi(emulator.api)
            names = [f"s{i:03d}" for i in range(sessions)]

            def create(name: str) -> float:
                body = {
                    "apiVersion": "rebound.dev/v1alpha1",
                    "kind": "BallSession",
                    "metadata": {"name": name, "namespace": NS},
                    "spec": {},
                }
                api.create_namespaced_custom_object(
                    "rebound.dev", "v1alpha1", NS, "ballsessions", body
                )
                return time.monotonic()

            cpu_before = sum(proc_times(operator.pid))
            say(f"emulated API server: creating {sessions} BallSessions at once")
            start = time.monotonic()
            with ThreadPoolExecutor(16) as pool:
                created = dict(zip(names, pool.map(create, names), strict=True))
            say(
                f"emulated API server: waiting until every session has its {CHILD_KINDS} "
                f"children and a status (at most {timeout:g} s)"
            )
            every = Every()
            children_at: dict[str, float] = {}
            status_at: dict[str, float] = {}
            peak_rss = 0
            deadline = start + timeout
            proc = psutil.Process(operator.pid)
            while time.monotonic() < deadline and (
                len(children_at) < sessions or len(status_at) < sessions
            ):
                counts, with_status = _snapshot(emulator)
                now = time.monotonic()
                for name in names:
                    if name not in children_at and counts.get(name, 0) >= CHILD_KINDS:
                        children_at[name] = now
                    if name not in status_at and name in with_status:
                        status_at[name] = now
                peak_rss = max(peak_rss, proc.memory_info().rss)
                if every.due():
                    say(
                        f"  {len(children_at)}/{sessions} with all children, "
                        f"{len(status_at)}/{sessions} with a status"
                    )
                time.sleep(0.5)
            say(
                f"  {len(children_at)}/{sessions} with all children, {len(status_at)}/{sessions} "
                "with a status; measuring the operator's memory for 5 s more"
            )
            settle_end = time.monotonic() + 5
            while time.monotonic() < settle_end:  # RSS once every session is being reconciled
                peak_rss = max(peak_rss, proc.memory_info().rss)
                time.sleep(0.25)
            operator_cpu = sum(proc_times(operator.pid)) - cpu_before
        finally:
            say("emulated API server: stopping the operator")
            operator.terminate()
            operator.wait(30)
            emulator.close()
    to_children = [children_at[n] - created[n] for n in children_at]
    to_status = [status_at[n] - created[n] for n in status_at]
    return {
        "sessions": sessions,
        "with_children": len(children_at),
        "all_children_s": (max(children_at.values()) - start) if children_at else None,
        "children_p50": float(np.percentile(to_children, 50)) if to_children else None,
        "children_p95": float(np.percentile(to_children, 95)) if to_children else None,
        "status_p50": float(np.percentile(to_status, 50)) if to_status else None,
        "status_p95": float(np.percentile(to_status, 95)) if to_status else None,
        "rss_mb": peak_rss / 2**20,
        "operator_cpu_s": operator_cpu,
    }


def _s(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def _row(where: str, r: dict[str, Any], limit_mib: float | None = None) -> str:
    requests = r.get("requests")
    per_session = f"{sum(requests.values()) / r['sessions']:.1f}" if requests else "n/a"
    limit = f" / {limit_mib:.0f}" if limit_mib else ""
    return (
        f"| {where} | {r['sessions']} | {r['with_children']} | {r.get('with_status', 'n/a')} "
        f"| {_s(r['all_children_s'])} "
        f"| {_s(r['children_p50'])} / {_s(r['children_p95'])} "
        f"| {_s(r['status_p50'])} / {_s(r['status_p95'])} | {r['rss_mb']:.0f}{limit} "
        f"| {r['operator_cpu_s']:.1f} | {per_session} |"
    )


def requests_table(runs: list[dict[str, Any]]) -> str:
    """The operator's API requests per session during each run, from the audit log."""
    counts = [r["sessions"] for r in runs]
    kinds = sorted(
        {k for r in runs for k in r["requests"]},
        key=lambda k: (-sum(r["requests"][k] / r["sessions"] for r in runs), k),
    )
    lines = [
        "\n### Operator API requests per session while they start (real API server, from "
        "its audit log)\n",
        "| request | " + " | ".join(f"{n} sessions" for n in counts) + " |",
        "|---|" + "---:|" * len(runs),
    ]
    for kind in kinds:
        cells = " | ".join(f"{r['requests'][kind] / r['sessions']:.2f}" for r in runs)
        lines.append(f"| {kind} | {cells} |")
    totals = " | ".join(f"**{sum(r['requests'].values()) / r['sessions']:.2f}**" for r in runs)
    lines.append(f"| **all** | {totals} |")
    return "\n".join(lines)


def _real_cluster() -> tuple[Any, str | None]:
    """The local cluster's API (make cluster-up), or None and why not."""
    from bench import cluster
    from localcluster.layout import Layout

    layout = Layout.default()
    if not layout.kubeconfig.exists():
        return None, "no local cluster (run `make cluster-up` first)"
    try:
        api = cluster.connect(layout)
        cluster.operator_process(api)
    except Exception as exc:
        return None, f"local cluster not usable: {exc}"
    return api, None


def main(argv: list[str] | None = None) -> int:
    """Print the operator benchmark tables: emulator and, if `make cluster-up` ran, the real
    API server side by side, then the operator's memory with unrelated objects."""
    parser = argparse.ArgumentParser(prog="python -m bench.operator")
    parser.add_argument(
        "--sessions",
        default="100,1000",
        help="comma-separated session counts, each created at once on the real API server "
        "(the emulator runs the first only); default 100,1000",
    )
    parser.add_argument("--timeout", type=float, default=120)
    parser.add_argument(
        "--real-only", action="store_true", help="skip the emulated API server's row"
    )
    parser.add_argument(
        "--unrelated",
        type=int,
        default=10_000,
        metavar="N",
        help="unrelated Pods and ConfigMaps (N each) for the memory row; 0 skips it",
    )
    args = parser.parse_args(argv)
    try:
        counts = [int(c) for c in str(args.sessions).split(",") if c.strip()]
    except ValueError:
        parser.error(f"--sessions {args.sessions}: not a comma-separated list of counts")
    if not counts or min(counts) < 1:
        parser.error(f"--sessions {args.sessions}: counts must be at least 1")
    from bench import cluster

    emulated = None if args.real_only else run(counts[0], args.timeout)
    api, why_not = _real_cluster()
    if api is None:
        say(f"real API server: skipped: {why_not}")
    real = []
    limit_mib = None
    if api is not None:
        limit_mib = cluster.operator_memory_limit_mib(api)
        for count in counts:
            # Creation takes longer the more sessions there are: allow for it.
            timeout = args.timeout * 3 * max(1.0, count / 100)
            real.append(cluster.sessions(api, count, timeout))
    print(f"Machine: {describe()}\n")
    print("### Operator: BallSessions created at once\n")
    print(
        f"| API server | sessions | with all {CHILD_KINDS} children | with a status "
        "| all children after (s) | create→children p50 / p95 (s) "
        "| create→status p50 / p95 (s) | operator peak RSS / limit (MiB) | operator CPU (s) "
        "| operator API requests per session |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    if emulated is not None:
        print(_row("emulated (kmock, in the benchmark's process)", emulated))
    for result in real:
        where = "real kube-apiserver v1.37.2 (local cluster, nodes cordoned)"
        print(_row(where, result, limit_mib))
    if real:
        print(requests_table(real))
    else:
        print(f"\nReal API server: skipped: {why_not}")
    if api is not None and args.unrelated:
        noise = cluster.noise(api, args.unrelated)
        print("\n### Operator memory with unrelated objects (real API server)\n")
        print(
            "| unrelated Pods + ConfigMaps | operator RSS idle (MB) | peak after (MB) "
            "| added (MB) | target |"
        )
        print("|---:|---:|---:|---:|---|")
        print(
            f"| {noise['unrelated']:,} + {noise['unrelated']:,} | {noise['idle_mb']:.0f} "
            f"| {noise['peak_mb']:.0f} | {noise['added_mb']:.1f} | < 20 MiB |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
