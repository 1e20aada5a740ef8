#!/usr/bin/env bash
# CI's container tier: start a Docker engine if possible, build the local base image and both
# images, then run a session in two containers. Prints clearly when and why it skips; fails
# loudly when the engine is up but a build or the session fails.
set -uo pipefail
cd "$(dirname "$0")/.."
skip() { echo "container tier SKIPPED: $*"; exit 0; }

if ! command -v docker >/dev/null || ! command -v debootstrap >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "installing docker.io and debootstrap ..."
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker.io debootstrap) \
      >/tmp/rebound-apt.log 2>&1 || skip "could not install docker.io/debootstrap (see /tmp/rebound-apt.log)"
  else
    skip "docker or debootstrap missing and cannot be installed here (not root or no apt-get)"
  fi
fi
scripts/docker-up.sh || skip "no Docker engine could be started"

set -e
echo "== container tier: base image, images, two-container session"
make base-image
make images BASE_IMAGE=rebound-base:bookworm PIP_CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt
make container-test
