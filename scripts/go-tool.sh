#!/usr/bin/env bash
# Build a Go tool once, cache it outside the repository, print the binary's path.
#   scripts/go-tool.sh install github.com/rhysd/actionlint/cmd/actionlint@v1.7.12
#       a module from the Go module proxy, cached by version;
#   scripts/go-tool.sh build e2e/gohealth
#       a module of this repository (go.mod + go.sum pinned), cached by a hash of its files.
# Builds run under `nice -n 15` (they share the machine). Cache: $REBOUND_GO_TOOLS, else
# ~/.cache/rebound/go-tools. Build output goes to stderr; stdout is only the path.
set -euo pipefail
usage() { echo "usage: $0 install MODULE/PATH@VERSION | build DIR" >&2; exit 2; }
[ $# -eq 2 ] || usage
cache="${REBOUND_GO_TOOLS:-$HOME/.cache/rebound/go-tools}"
if ! command -v go >/dev/null; then
  echo "go-tool.sh: go is not installed (needed to build $2; https://go.dev/dl or apt-get install golang)" >&2
  exit 1
fi
case "$1" in
  install)
    [[ "$2" == *@* ]] || usage
    package="${2%@*}" version="${2##*@}"
    name="$(basename "$package")"
    dir="$cache/$name-$version"
    bin="$dir/$name"
    if [ ! -x "$bin" ]; then
      mkdir -p "$dir.partial"
      GOBIN="$dir.partial" CGO_ENABLED=0 nice -n 15 go install -trimpath "$2" >&2
      rm -rf "$dir" && mv "$dir.partial" "$dir"
    fi
    ;;
  build)
    module="$(cd "$2" && pwd)"
    name="$(basename "$module")"
    hash="$(cd "$module" && cat go.mod go.sum ./*.go | sha256sum | cut -c1-16)"
    dir="$cache/$name-$hash"
    bin="$dir/$name"
    if [ ! -x "$bin" ]; then
      mkdir -p "$dir"
      (cd "$module" && CGO_ENABLED=0 GOFLAGS=-mod=readonly nice -n 15 \
        go build -trimpath -o "$bin.partial" .) >&2
      mv "$bin.partial" "$bin"
    fi
    ;;
  *) usage ;;
esac
echo "$bin"
