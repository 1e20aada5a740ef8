#!/usr/bin/env bash
# Make sure a Docker engine answers: start dockerd in the background if none runs.
# Exit 0 when `docker info` works, 1 (with the reason on stderr) when it cannot.
set -uo pipefail
command -v docker >/dev/null || { echo "docker CLI not installed" >&2; exit 1; }
docker info >/dev/null 2>&1 && exit 0
command -v dockerd >/dev/null || { echo "dockerd not installed" >&2; exit 1; }
[ "$(id -u)" = 0 ] || { echo "not root: cannot start dockerd" >&2; exit 1; }
LOG="${DOCKERD_LOG:-/tmp/rebound-dockerd.log}"
nohup dockerd >"$LOG" 2>&1 &
for _ in $(seq 1 60); do
  docker info >/dev/null 2>&1 && exit 0
  sleep 1
done
echo "dockerd did not come up; last lines of $LOG:" >&2
tail -5 "$LOG" >&2
exit 1
