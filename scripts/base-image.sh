#!/usr/bin/env bash
# Build a minimal Debian bookworm base image with python3 from Debian packages, for machines
# that cannot pull images from a registry: debootstrap into a folder, then `docker import`.
# The host's CA bundle is copied in, so pip inside later builds works behind a
# TLS-intercepting proxy. Usage: scripts/base-image.sh [TAG]   (default rebound-base:bookworm)
set -euo pipefail
TAG="${1:-rebound-base:bookworm}"
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
CA_BUNDLE="${CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}"

for tool in debootstrap docker; do
  command -v "$tool" >/dev/null || { echo "error: $tool is not installed" >&2; exit 1; }
done
if docker image inspect "$TAG" >/dev/null 2>&1 && [ -z "${FORCE:-}" ]; then
  echo "base image $TAG exists (FORCE=1 to rebuild)"; exit 0
fi
ROOT="$(mktemp -d /tmp/rebound-rootfs.XXXXXX)"
trap 'rm -rf "$ROOT"' EXIT
echo "debootstrap bookworm (minbase + python3) into $ROOT ..."
debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
  bookworm "$ROOT" "$MIRROR" >"$ROOT.log" 2>&1 || { tail -20 "$ROOT.log" >&2; exit 1; }
rm -f "$ROOT.log"
if [ -f "$CA_BUNDLE" ]; then
  cp "$CA_BUNDLE" "$ROOT/etc/ssl/certs/ca-certificates.crt"
fi
# Slim the tree: package caches, docs and man pages are not needed at run time.
rm -rf "$ROOT"/var/cache/apt/archives/*.deb "$ROOT"/var/lib/apt/lists/* \
       "$ROOT"/usr/share/doc/* "$ROOT"/usr/share/man/* "$ROOT"/usr/share/locale/*
ln -sf python3 "$ROOT/usr/bin/python"
tar -C "$ROOT" -c . | docker import \
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'ENV LANG=C.UTF-8' \
  --change 'CMD ["python3"]' \
  - "$TAG" >/dev/null
echo "built $TAG ($(docker image inspect -f '{{.Size}}' "$TAG" | awk '{printf "%.0f MB", $1/1e6}'))"
