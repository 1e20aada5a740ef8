#!/bin/sh
# Builder stage of both images: the venv /opt/rebound, every dependency pinned and
# hash-checked by requirements/EXTRA.txt (`make lock`), then the project without its deps.
#   sh docker/install.sh deps EXTRA   (only requirements/EXTRA.txt is in /src yet)
#   sh docker/install.sh project      (the sources are in /src)
# PIP_CA_BUNDLE (a build arg) names a CA bundle in docker/ca/ that pip trusts while it
# downloads, e.g. a TLS-intercepting proxy's: it is used here only, and the final stage
# copies /opt/rebound alone, so no image ever carries it.
set -eu
venv=/opt/rebound
case "${1:-}" in
  deps)
    extra="${2:?usage: install.sh deps EXTRA}"
    if [ -n "${PIP_CA_BUNDLE:-}" ]; then
      [ -f "/tmp/ca/${PIP_CA_BUNDLE}" ] || {
        echo "install.sh: error: PIP_CA_BUNDLE=${PIP_CA_BUNDLE} is not in docker/ca/" >&2; exit 2; }
      export PIP_CERT="/tmp/ca/${PIP_CA_BUNDLE}"
    fi
    python3 -m venv "$venv"
    "$venv/bin/pip" install --require-hashes --no-deps -r "requirements/${extra}.txt"
    ;;
  project)
    "$venv/bin/pip" install --no-deps --no-build-isolation --no-index .
    "$venv/bin/pip" check
    # Build tools only: the images run without pip and setuptools.
    "$venv/bin/pip" uninstall -y pip setuptools
    find "$venv" -name '__pycache__' -prune -exec rm -rf {} +
    ;;
  *)
    echo "usage: install.sh deps EXTRA | project" >&2; exit 2 ;;
esac
