#!/usr/bin/env bash
# Make sure a Docker engine answers: install docker.io if missing (root + apt-get), configure
# dockerd for this host (`python -m kindnode engine`: the runc wrapper as default runtime
# where the capability bounding set lacks what `--privileged` asks for) and start it in the
# background if none runs. Exit 0 when `docker info` works, 1 (with the reason on stderr)
# when it cannot.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
[ -x "$PY" ] || { echo "no $PY: run make install first" >&2; exit 1; }
exec "$PY" -m kindnode engine
