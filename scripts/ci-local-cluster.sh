#!/usr/bin/env bash
# CI's real-API-server tier: build the control plane if it is not cached
# (~/.cache/rebound/cluster/<version>), start it with a process node, install Rebound the way
# a user does, run the e2e suite against it, and always tear it down. Under CI=true a tier that
# cannot run is a failure; elsewhere it prints one line saying what is missing and skips.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
# Installs missing system packages (iptables, ...) where it can, then checks the machine.
said="$($PY -m localcluster preflight 2>&1)"; rc=$?
[ -n "$said" ] && [ $rc -eq 0 ] && echo "$said"
if [ $rc -ne 0 ]; then
  problem="${said##*localcluster: error: }"
  if [ "${CI:-}" = "true" ]; then
    echo "local-cluster tier FAILED: cannot run under CI: $problem" >&2
    exit 1
  fi
  echo "local-cluster tier SKIPPED: $problem"
  exit 0
fi
echo "== local-cluster tier: control plane v$($PY -c 'from localcluster.build import KUBERNETES_VERSION as v; print(v[1:])') from source, process node, Rebound, e2e"
trap 'make cluster-down >/dev/null 2>&1 || true' EXIT
start=$(date +%s)
make cluster-up || { tail -n 30 .cluster/logs/*.log 2>/dev/null; exit 1; }
echo "cluster-up took $(( $(date +%s) - start )) s"
if ! make e2e-local; then
  echo "== local-cluster tier failed: the process node's and the operator's last log lines" >&2
  tail -n 60 .cluster/logs/process-node.log >&2
  cat .cluster/pods/logs/rebound-system_rebound-operator-*.log 2>/dev/null | grep -v '"severity": "info"' | tail -n 40 >&2
  exit 1
fi
