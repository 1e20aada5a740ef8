#!/usr/bin/env bash
# CI's kind tier: the kind node image built here from source (cached in ~/.cache/rebound and
# in the Docker engine; `make kind-image`), then `make e2e`: a two-node kind cluster from it,
# both Rebound images built and loaded, Rebound deployed, the e2e suite (REBOUND_E2E=1), the
# cluster deleted. Nothing is pulled from any registry. Under CI=true a tier that cannot run
# is a failure; elsewhere it prints one line saying why and skips.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
skip() {
  if [ "${CI:-}" = "true" ]; then
    echo "kind tier FAILED: cannot run under CI: $*" >&2
    exit 1
  fi
  echo "kind tier SKIPPED: $*"; exit 0
}
exec 3>&1
problem="$($PY -m kindnode host 2>&1 1>&3)" || skip "${problem##*kindnode: error: }"
problem="$($PY -m kindnode engine 2>&1 1>&3)" || skip "${problem##*kindnode: error: }"

set -e
CA_BUNDLE="${PIP_CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}"
echo "== kind tier: node image built here, two-node kind cluster, Rebound's images, e2e"
trap 'make kind-down >/dev/null 2>&1 || true' EXIT
start=$(date +%s)
make kind-image
echo "kind-image took $(( $(date +%s) - start )) s"
start=$(date +%s)
if ! make e2e KEEP=1 BASE_IMAGE=rebound-base:bookworm PIP_CA_BUNDLE="$CA_BUNDLE"; then
  echo "== kind tier failed: pods, recent events and the operator's last log lines" >&2
  export KUBECONFIG="$PWD/.kind/kubeconfig"
  PATH="$($PY -c 'from localcluster.build import bin_dir; print(bin_dir())'):$PATH"
  kubectl get pods -A -o wide >&2 || true
  kubectl get events -A --sort-by=.lastTimestamp 2>/dev/null | tail -n 40 >&2 || true
  kubectl -n rebound-system logs deploy/rebound-operator --tail=40 >&2 || true
  exit 1
fi
echo "make e2e took $(( $(date +%s) - start )) s"
