#!/usr/bin/env bash
# Debian packages some tests need and the project installs itself (CI runs this):
#   chromium        the live view and the report in a real browser (tests, make screenshots)
#   xvfb            --display under a virtual X server (with `make install-gui`)
#   docker-compose  compose.yaml on the container tier (when no compose v2 plugin is present)
# Root + apt-get only; prints what is missing and exits 1 otherwise. Already-present tools are
# not reinstalled.
set -euo pipefail
wanted=(chromium xvfb)
docker compose version >/dev/null 2>&1 || wanted+=(docker-compose)
missing=()
for package in "${wanted[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
[ ${#missing[@]} -eq 0 ] && { echo "test tools present: ${wanted[*]}"; exit 0; }
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
  echo "install-test-tools: missing ${missing[*]}; needs root and apt-get" >&2
  exit 1
fi
echo "installing ${missing[*]} ..."
export DEBIAN_FRONTEND=noninteractive
apt-get install -y -qq "${missing[@]}" >/tmp/rebound-test-tools.log 2>&1 \
  || { apt-get update -qq >>/tmp/rebound-test-tools.log 2>&1 \
       && apt-get install -y -qq "${missing[@]}" >>/tmp/rebound-test-tools.log 2>&1; } \
  || { echo "install-test-tools: apt-get failed (see /tmp/rebound-test-tools.log)" >&2; exit 1; }
echo "installed ${missing[*]}"
