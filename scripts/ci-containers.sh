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
skip() { echo "container tier SKIPPED: $*"; exit 0; }

# True when docker's CLI, debootstrap, or an engine (a dockerd to start, or one that already
# answers) is missing.
needs_packages() {
  command -v docker >/dev/null || return 0
  command -v debootstrap >/dev/null || return 0
  command -v dockerd >/dev/null && return 1
  ! docker info >/dev/null 2>&1
}

if needs_packages; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "installing docker.io and debootstrap ..."
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker.io debootstrap) \
      >/tmp/rebound-apt.log 2>&1 || skip "could not install docker.io/debootstrap (see /tmp/rebound-apt.log)"
  else
    skip "docker, dockerd or debootstrap missing and cannot be installed here (not root or no apt-get)"
  fi
fi
scripts/docker-up.sh || skip "no Docker engine could be started"

set -e
CA_BUNDLE="${PIP_CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}"
echo "== container tier: base image, images, operator + peer containers on the emulator"
make base-image
make images BASE_IMAGE=rebound-base:bookworm PIP_CA_BUNDLE="$CA_BUNDLE"
make container-test PIP_CA_BUNDLE="$CA_BUNDLE"
