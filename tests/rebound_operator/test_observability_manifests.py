"""The metrics plumbing as shipped: the Grafana dashboard queries only metrics the operator
exports (and shows every one of them), and the Service, the ServiceMonitor component and the
dashboard component, rendered by kustomize, point at the port the operator serves."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import REGISTRY
from rebound_operator import telemetry

REPO = Path(__file__).resolve().parents[2]
DASHBOARD = REPO / "manifests" / "components" / "grafana-dashboard" / "rebound-dashboard.json"
KUBECTL = shutil.which("kubectl")

SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "summary": ("", "_sum", "_count", "_created"),
}
PROMQL_KEYWORDS = {
    "by", "without", "on", "ignoring", "group_left", "group_right", "bool", "offset",
    "and", "or", "unless", "inf", "nan",
}  # fmt: skip


def exported_names() -> set[str]:
    """Every sample name the operator's /metrics can serve (its registry, with the
    suffixes Prometheus' text format adds per metric type)."""
    assert telemetry.SESSIONS  # the module registered its metrics
    names: set[str] = set()
    for family in REGISTRY.collect():
        for suffix in SUFFIXES.get(family.type, ("",)):
            names.add(family.name + suffix)
    return names


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects: identifiers that are not functions,
    keywords, label names (inside `{}` or a `by (...)` list), ranges or strings."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # string literals
    text = re.sub(r"\{[^}]*\}", " ", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", " ", text)  # ranges, Grafana's [$window]
    text = re.sub(
        r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text
    )  # label lists
    names = set()
    for match in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", text):
        word = match.group()
        following = text[match.end() :].lstrip()
        if following.startswith("(") or word.lower() in PROMQL_KEYWORDS:
            continue
        if match.start() > 0 and text[match.start() - 1] in "$.0123456789":
            continue  # a Grafana variable, or part of a number such as 1e6
        names.add(word)
    return names


def test_the_metric_name_extractor() -> None:
    expr = (
        'histogram_quantile(0.95, sum by (le, verb) (rate(a_bucket{job=~"$job",x="by(y)"}'
        "[$__rate_interval]))) / on (job) group_left (pod) b_total offset 5m + 1e6 * c"
    )
    assert metric_names(expr) == {"a_bucket", "b_total", "c"}


def dashboard() -> dict[str, Any]:
    return dict(json.loads(DASHBOARD.read_text()))


def targets(board: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    return [
        (str(panel["title"]), target)
        for panel in board["panels"]
        for target in panel.get("targets", [])
    ]


def test_the_dashboard_is_well_formed() -> None:
    board = dashboard()
    assert board["uid"] and board["title"]
    ids = [panel["id"] for panel in board["panels"]]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    variables = {v["name"] for v in board["templating"]["list"]}
    assert {"datasource", "job", "window"} <= variables
    for panel in board["panels"]:
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["x"] + grid["w"] <= 24, panel["title"]
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        refs = [t["refId"] for t in panel["targets"]]
        assert refs and len(refs) == len(set(refs)), panel["title"]
    for title, target in targets(board):
        assert target["expr"].count("(") == target["expr"].count(")"), title
        assert 'job=~"$job"' in target["expr"], f"{title}: every query filters by $job"


def test_every_metric_the_dashboard_queries_is_exported() -> None:
    exported = exported_names()
    used: set[str] = set()
    for title, target in targets(dashboard()):
        names = metric_names(target["expr"])
        assert names, f"{title}: no metric in {target['expr']}"
        unknown = names - exported
        assert not unknown, f"{title}: {sorted(unknown)} are not exported by the operator"
        used |= names
    ours = {n.removesuffix("_created") for n in exported if n.startswith("rebound_")}
    shown = {n for n in ours if any(u.startswith(_family(n)) for u in used)}
    assert shown == ours, f"exported but on no panel: {sorted(ours - shown)}"


def _family(sample: str) -> str:
    for suffix in ("_total", "_bucket", "_sum", "_count"):
        if sample.endswith(suffix):
            return sample.removesuffix(suffix)
    return sample


def render(kustomization: str, where: Path) -> list[dict[str, Any]]:
    assert KUBECTL is not None
    (where / "kustomization.yaml").write_text(kustomization)
    out = subprocess.run(
        [KUBECTL, "kustomize", str(where)],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    ).stdout
    return [d for d in yaml.safe_load_all(out) if d]


@pytest.mark.skipif(KUBECTL is None, reason="kubectl (kustomize) is not installed")
def test_service_servicemonitor_and_dashboard_point_at_the_operator_port(
    tmp_path: Path,
) -> None:
    manifests = os.path.relpath(REPO / "manifests", tmp_path)  # kustomize wants relative
    docs = render(
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n"
        f"resources: [{manifests}]\n"
        f"components: [{manifests}/components/prometheus, "
        f"{manifests}/components/grafana-dashboard]\n",
        tmp_path,
    )
    by_kind = {(d["kind"], d["metadata"]["name"]): d for d in docs}
    deployment = by_kind["Deployment", "rebound-operator"]
    pod = deployment["spec"]["template"]
    (container,) = pod["spec"]["containers"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert ports == {"http": 8080}  # the default --liveness port, /metrics beside it

    service = by_kind["Service", "rebound-operator-metrics"]
    assert service["metadata"]["namespace"] == "rebound-system"
    selector = service["spec"]["selector"]
    assert selector.items() <= pod["metadata"]["labels"].items()
    (port,) = service["spec"]["ports"]
    assert port["targetPort"] == "http" and port["name"] == "http"

    monitor = by_kind["ServiceMonitor", "rebound-operator"]
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    wanted = monitor["spec"]["selector"]["matchLabels"]
    assert wanted.items() <= service["metadata"]["labels"].items()
    assert monitor["spec"]["namespaceSelector"]["matchNames"] == ["rebound-system"]
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] == port["name"] and endpoint["path"] == "/metrics"

    board = by_kind["ConfigMap", "rebound-dashboard"]
    assert board["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(board["data"]["rebound-dashboard.json"]) == dashboard()


@pytest.mark.skipif(KUBECTL is None, reason="kubectl (kustomize) is not installed")
def test_the_plain_install_has_the_service_but_no_servicemonitor() -> None:
    out = subprocess.run(
        [str(KUBECTL), "kustomize", str(REPO / "manifests")],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    ).stdout
    kinds = {d["kind"] for d in yaml.safe_load_all(out) if d}
    assert "Service" in kinds and "ServiceMonitor" not in kinds  # needs prometheus-operator
