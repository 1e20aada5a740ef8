"""The install manifests as kustomize renders them: identity, no fixed UIDs, least privilege,
and a namespace-scoped overlay without any ClusterRole."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from rebound_operator.children import OWN_VERBS, PEER_VERBS, Owner, role

REPO = Path(__file__).resolve().parents[2]
KUBECTL = shutil.which("kubectl")
pytestmark = pytest.mark.skipif(KUBECTL is None, reason="kubectl (kustomize) is not installed")


def render(overlay: str) -> list[dict[str, Any]]:
    assert KUBECTL is not None
    out = subprocess.run(
        [KUBECTL, "kustomize", str(REPO / overlay)],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    ).stdout
    return [d for d in yaml.safe_load_all(out) if d]


def find(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    (found,) = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    return found


def verbs(rules: list[dict[str, Any]], group: str, resource: str) -> set[str]:
    return {
        v
        for r in rules
        if group in r.get("apiGroups", []) and resource in r.get("resources", [])
        for v in r["verbs"]
    }


@pytest.mark.parametrize(
    "overlay", ["manifests", "manifests/overlays/kind", "manifests/overlays/namespaced"]
)
def test_the_operator_pod_has_an_identity_and_no_fixed_ids(overlay: str) -> None:
    deployment = find(render(overlay), "Deployment", "rebound-operator")
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    env = {e["name"]: e for e in container["env"]}
    assert env["POD_ID"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    assert pod["securityContext"]["runAsNonRoot"] is True
    for context in (pod["securityContext"], container["securityContext"]):
        assert not {"runAsUser", "runAsGroup", "fsGroup"} & set(context)


def test_the_cluster_wide_install_grants_what_the_peers_get() -> None:
    docs = render("manifests")
    rules = find(docs, "ClusterRole", "rebound-operator")["rules"]
    # RBAC escalation check: the operator must hold every verb it grants a peer Role.
    assert set(OWN_VERBS) | set(PEER_VERBS) <= verbs(rules, "", "configmaps")
    for rule in role(Owner("s", "ns", "uid"), "server")["rules"]:
        assert set(rule["verbs"]) <= verbs(rules, "", "configmaps")
    assert not verbs(rules, "", "namespaces")  # kopf lists none when cluster-wide
    assert not verbs(rules, "", "secrets")  # TURN credentials are resolved by the kubelet
    api = find(docs, "Role", "rebound-operator-apiserver")
    assert api["metadata"]["namespace"] == "default"
    assert all(r["resourceNames"] == ["kubernetes"] and r["verbs"] == ["get"] for r in api["rules"])


def test_the_namespaced_overlay_has_no_cluster_role() -> None:
    docs = render("manifests/overlays/namespaced")
    kinds = {d["kind"] for d in docs}
    assert not {"ClusterRole", "ClusterRoleBinding"} & kinds
    deployment = find(docs, "Deployment", "rebound-operator")
    args = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[args.index("--namespace") + 1] == "rebound-sessions"
    namespaced = find(docs, "Role", "rebound-operator")
    assert namespaced["metadata"]["namespace"] == "rebound-sessions"
    binding = find(docs, "RoleBinding", "rebound-operator")
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "rebound-operator", "namespace": "rebound-system"}
    ]
    # the same rights as the ClusterRole, minus the cluster-scoped CRD observation
    cluster_rules = find(render("manifests"), "ClusterRole", "rebound-operator")["rules"]
    expected = [r for r in cluster_rules if "apiextensions.k8s.io" not in r["apiGroups"]]
    assert namespaced["rules"] == expected


def images_of(docs: list[dict[str, Any]]) -> tuple[str, str]:
    """The operator's container image and the peer image it runs (REBOUND_PEER_IMAGE)."""
    (container,) = find(docs, "Deployment", "rebound-operator")["spec"]["template"]["spec"][
        "containers"
    ]
    env = {e["name"]: e.get("value") for e in container["env"]}
    return container["image"], env["REBOUND_PEER_IMAGE"]


def test_the_base_names_the_released_images_of_this_version() -> None:
    """One version and one registry everywhere: pyproject, the operator's own default peer
    image, the base manifests and the images' labels (the release workflow checks the tag
    against pyproject)."""
    import tomllib

    from rebound_operator import __version__
    from rebound_operator.settings import DEFAULT_PEER_IMAGE, PUBLISHED_IMAGES

    version = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    assert __version__ == version
    assert images_of(render("manifests")) == (
        f"{PUBLISHED_IMAGES}/rebound-operator:{version}",
        f"{PUBLISHED_IMAGES}/rebound-peer:{version}",
    )
    assert f"{PUBLISHED_IMAGES}/rebound-peer:{version}" == DEFAULT_PEER_IMAGE
    owner = PUBLISHED_IMAGES.removeprefix("ghcr.io/")
    for dockerfile in ("Dockerfile.peer", "Dockerfile.operator"):
        text = (REPO / dockerfile).read_text()
        assert f'org.opencontainers.image.version="{version}"' in text, dockerfile
        assert f'org.opencontainers.image.source="https://github.com/{owner}/' in text


def test_the_release_install_yaml_moves_both_images_together() -> None:
    script = REPO / "scripts" / "render-install.sh"
    out = subprocess.run(
        ["bash", str(script), "registry.example/team/", "1.2.3-rc.1"],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    ).stdout
    docs = [d for d in yaml.safe_load_all(out) if d]
    assert images_of(docs) == (
        "registry.example/team/rebound-operator:1.2.3-rc.1",
        "registry.example/team/rebound-peer:1.2.3-rc.1",
    )
    assert "ghcr.io/rebound-dev" not in out
    assert {d["kind"] for d in docs} >= {"CustomResourceDefinition", "Deployment", "Namespace"}
    assert len(docs) == len(render("manifests"))  # the whole install, nothing added
    for bad in (["Registry.Example", "1"], ["registry.example", "-1"], ["only-one"]):
        refused = subprocess.run(
            ["bash", str(script), *bad], capture_output=True, text=True, timeout=60
        )
        assert refused.returncode == 2 and refused.stderr.count("\n") == 1, refused.stderr
