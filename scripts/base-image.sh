#!/usr/bin/env bash
# Build a minimal Debian bookworm base image with python3 from Debian packages, for machines
# that cannot pull images from a registry: debootstrap into a folder, then `docker import`.
# It trusts Debian's CA set only: a build host's proxy CA is handed to the image builds'
# builder stage (`make images PIP_CA_BUNDLE=...`), never put into an image.
# The image is labelled with this script's hash, so an image made by another version of it
# (e.g. one that carried the host's CA bundle) is rebuilt.
# Usage: scripts/base-image.sh [TAG]   (default rebound-base:bookworm; FORCE=1 rebuilds)
set -euo pipefail
TAG="${1:-rebound-base:bookworm}"
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
RECIPE="$(sha256sum "$0" | cut -c1-16)"
RECIPE_LABEL=dev.rebound.base-recipe

for tool in debootstrap docker; do
  command -v "$tool" >/dev/null || { echo "error: $tool is not installed" >&2; exit 1; }
done
built_by="$(docker image inspect -f "{{ index .Config.Labels \"$RECIPE_LABEL\" }}" "$TAG" 2>/dev/null || true)"
if [ "$built_by" = "$RECIPE" ] && [ -z "${FORCE:-}" ]; then
  echo "base image $TAG exists (FORCE=1 to rebuild)"; exit 0
fi
# Under the cache, not /tmp: debootstrap makes device nodes, which a tmpfs /tmp mounted nodev
# (Debian 13, Fedora) refuses.
WORK="$HOME/.cache/rebound/work"
mkdir -p "$WORK"
ROOT="$(mktemp -d "$WORK/rebound-rootfs.XXXXXX")"
trap 'rm -rf "$ROOT"' EXIT
echo "debootstrap bookworm (minbase + python3) into $ROOT ..."
debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
  bookworm "$ROOT" "$MIRROR" >"$ROOT.log" 2>&1 || { tail -20 "$ROOT.log" >&2; exit 1; }
rm -f "$ROOT.log"
# Slim the tree: package caches, docs and man pages are not needed at run time.
rm -rf "$ROOT"/var/cache/apt/archives/*.deb "$ROOT"/var/lib/apt/lists/* \
       "$ROOT"/usr/share/doc/* "$ROOT"/usr/share/man/* "$ROOT"/usr/share/locale/*
ln -sf python3 "$ROOT/usr/bin/python"
tar -C "$ROOT" -c . | docker import \
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'ENV LANG=C.UTF-8' \
  --change 'CMD ["python3"]' \
  --change "LABEL $RECIPE_LABEL=$RECIPE" \
  - "$TAG" >/dev/null
echo "built $TAG ($(docker image inspect -f '{{.Size}}' "$TAG" | awk '{printf "%.0f MB", $1/1e6}'))"
