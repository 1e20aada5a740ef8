#!/usr/bin/env bash
# CI's container tier: start a Docker engine if possible, build the local base image and both
# images (dependencies from requirements/*.txt; the host's CA bundle, which holds this
# machine's TLS-intercepting proxy CA, is used by the builder stage only), then run
# e2e/test_containers.py: the operator image's entry point driving a BallSession on the
# emulated API server with the peers as containers, the images under any UID, their locked
# versions, and no trace of the host's private CAs in them. Prints clearly when and why it
# skips; fails loudly when the engine is up but a build or a test fails.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
# Prints why the tier cannot run; under CI=true that is a failure, elsewhere a skip.
skip() {
  if [ "${CI:-}" = "true" ]; then
    echo "container tier FAILED: cannot run under CI: $*" >&2
    exit 1
  fi
  echo "container tier SKIPPED: $*"; exit 0
}

# docker.io (engine + CLI) and debootstrap, installed with apt-get where possible (its
# progress lines go to stdout, the reason it could not to $problem).
exec 3>&1
problem="$($PY -m localcluster.packages docker dockerd debootstrap 2>&1 1>&3)" \
  || skip "${problem:-cannot install docker.io/debootstrap}"
scripts/docker-up.sh || skip "no Docker engine could be started"

set -e
CA_BUNDLE="${PIP_CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}"
echo "== container tier: base image, images, operator + peer containers on the emulator"
make base-image
make images BASE_IMAGE=rebound-base:bookworm PIP_CA_BUNDLE="$CA_BUNDLE"
make container-test PIP_CA_BUNDLE="$CA_BUNDLE"
