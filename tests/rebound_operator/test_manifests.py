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
