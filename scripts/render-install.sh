#!/usr/bin/env bash
# Print the install YAML (`kubectl kustomize manifests/`) with both images moved to
# PREFIX/rebound-operator:TAG and PREFIX/rebound-peer:TAG: the operator's container image
# (kustomize `images:`) and the peer image, which is a setting of the operator
# (REBOUND_PEER_IMAGE), so both move together.
#   scripts/render-install.sh ghcr.io/rebound-dev 0.1.0 > rebound-install.yaml
#   scripts/render-install.sh registry.example/team 0.1.0-dev > rebound-install.yaml
# The release workflow attaches its output to each GitHub release; `make install-yaml` runs it.
set -euo pipefail
if [ $# -ne 2 ]; then
  echo "usage: $0 IMAGE_PREFIX TAG   (e.g. ghcr.io/rebound-dev 0.1.0)" >&2
  exit 2
fi
prefix="${1%/}" tag="$2"
if ! [[ "$tag" =~ ^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$ ]]; then
  echo "$0: error: $tag is not a valid image tag" >&2
  exit 2
fi
if ! [[ "$prefix" =~ ^[a-z0-9]([a-z0-9._:/-]*[a-z0-9])?$ ]]; then
  echo "$0: error: $prefix is not a registry/namespace prefix (lower case, e.g. ghcr.io/owner)" >&2
  exit 2
fi
command -v kubectl >/dev/null || { echo "$0: error: kubectl (kustomize) is required" >&2; exit 1; }
repo="$(cd "$(dirname "$0")/.." && pwd)"
mkdir -p "$repo/build"
overlay="$(mktemp -d "$repo/build/install.XXXXXX")"
trap 'rm -rf "$overlay"' EXIT
cat > "$overlay/kustomization.yaml" <<YAML
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
  - ../../manifests
images:
  - name: ghcr.io/rebound-dev/rebound-operator
    newName: $prefix/rebound-operator
    newTag: "$tag"
patches:
  - target: {kind: Deployment, name: rebound-operator}
    patch: |-
      - op: test
        path: /spec/template/spec/containers/0/env/1/name
        value: REBOUND_PEER_IMAGE
      - op: replace
        path: /spec/template/spec/containers/0/env/1/value
        value: "$prefix/rebound-peer:$tag"
YAML
kubectl kustomize "$overlay"
