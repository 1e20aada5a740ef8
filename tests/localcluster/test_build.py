"""The control-plane build's pure parts: staging replaces come from kubernetes' own go.mod."""

from __future__ import annotations

import pytest

from localcluster import build

UPSTREAM = {
    "Go": "1.26.0",
    "Require": [
        {"Path": "k8s.io/api", "Version": "v0.0.0"},
        {"Path": "k8s.io/client-go", "Version": "v0.0.0"},
        {"Path": "k8s.io/streaming", "Version": "v0.0.0"},
        {"Path": "k8s.io/klog/v2", "Version": "v2.130.1"},
        {"Path": "go.etcd.io/etcd/server/v3", "Version": "v3.7.0", "Indirect": True},
    ],
    "Replace": [
        {"Old": {"Path": "k8s.io/api"}, "New": {"Path": "./staging/src/k8s.io/api"}},
        {
            "Old": {"Path": "github.com/x/broken"},
            "New": {"Path": "github.com/x/fixed", "Version": "v1.2.3"},
        },
    ],
}


def test_staging_modules_are_exactly_the_v0_0_0_requirements() -> None:
    module = build.parse_go_mod_json(UPSTREAM)
    assert build.staging_modules(module) == ["k8s.io/api", "k8s.io/client-go", "k8s.io/streaming"]


def test_the_build_module_replaces_each_staging_module_with_its_release() -> None:
    text = build.render_go_mod("v1.37.2", "1.26.0", build.parse_go_mod_json(UPSTREAM))
    assert "require k8s.io/kubernetes v1.37.2" in text
    for path in ("k8s.io/api", "k8s.io/client-go", "k8s.io/streaming"):
        assert f"\t{path} => {path} v0.37.2" in text
    assert "k8s.io/klog/v2 =>" not in text
    assert "./staging" not in text  # local replaces only make sense inside kubernetes' repo
    assert "\tgithub.com/x/broken => github.com/x/fixed v1.2.3" in text
    assert "go 1.26.0" in text


@pytest.mark.parametrize(("version", "staging"), [("v1.37.2", "v0.37.2"), ("v1.36.10", "v0.36.10")])
def test_staging_version(version: str, staging: str) -> None:
    assert build.staging_version(version) == staging


@pytest.mark.parametrize("bad", ["1.37.2", "v2.0.0", "v1.37", "v1.37.2-rc.1"])
def test_a_non_release_version_is_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="not a Kubernetes release"):
        build.staging_version(bad)


def test_version_stamps_make_kubectl_version_show_the_release() -> None:
    flags = build.ldflags("v1.37.2")
    assert "-X k8s.io/component-base/version.gitVersion=v1.37.2" in flags
    assert "-X k8s.io/component-base/version.gitMajor=1" in flags
    assert "-X k8s.io/component-base/version.gitMinor=37" in flags


def test_binaries_are_cached_outside_the_repository_by_version(
    monkeypatch: pytest.MonkeyPatch, tmp_path: object
) -> None:
    monkeypatch.setenv("REBOUND_CLUSTER_CACHE", str(tmp_path))
    assert str(build.bin_dir("v1.37.2")) == f"{tmp_path}/v1.37.2/bin"
    monkeypatch.delenv("REBOUND_CLUSTER_CACHE")
    assert ".cache/rebound/cluster/v1.37.2/bin" in str(build.bin_dir("v1.37.2"))
