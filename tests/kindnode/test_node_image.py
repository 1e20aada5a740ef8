"""Which image is built how, under which name, and what the node image is made of (pure)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from kindnode import cluster, images, nodeimage, rootfs

KUBEADM_LIST = [
    "registry.k8s.io/kube-apiserver:v1.37.2",
    "registry.k8s.io/kube-controller-manager:v1.37.2",
    "registry.k8s.io/kube-scheduler:v1.37.2",
    "registry.k8s.io/kube-proxy:v1.37.2",
    "registry.k8s.io/coredns/coredns:v1.14.6",
    "registry.k8s.io/pause:3.10.2",
    "registry.k8s.io/etcd:3.7.0-0",
]


def test_every_image_kubeadm_asks_for_has_a_recipe_under_its_exact_name() -> None:
    extra = [
        "registry.k8s.io/pause:3.10",
        "registry.k8s.io/networking/kube-network-policies:v0.8.0",
        "rebound-cni:abc123",
    ]
    recipes = {r.reference: r for r in images.plan([*KUBEADM_LIST, *extra, KUBEADM_LIST[0]])}
    assert sorted(recipes) == sorted([*KUBEADM_LIST, *extra])
    assert recipes["registry.k8s.io/etcd:3.7.0-0"].path == "/usr/local/bin/etcd"
    assert recipes["registry.k8s.io/kube-proxy:v1.37.2"].base == rootfs.TOOLS.tag
    assert recipes["registry.k8s.io/pause:3.10"].binary == "pause"
    assert recipes["registry.k8s.io/pause:3.10"].user == "65535:65535"
    assert recipes["registry.k8s.io/coredns/coredns:v1.14.6"].user == "0"
    assert recipes["rebound-cni:abc123"].base == rootfs.TOOLS.tag


def test_an_image_nobody_knows_how_to_build_is_an_error() -> None:
    with pytest.raises(images.ImageError, match=r"no recipe for the image registry\.k8s\.io/x:1"):
        images.plan(["registry.k8s.io/x:1"])
    with pytest.raises(images.ImageError, match="without a tag"):
        images.split_reference("registry.k8s.io/kube-apiserver")
    assert images.split_reference("localhost:5000/a/b:v1") == ("localhost:5000/a/b", "v1")


def test_a_scratch_image_holds_its_binary_on_path_and_runs_it() -> None:
    recipe = images.recipe_for("registry.k8s.io/coredns/coredns:v1.14.6")
    assert recipe.dockerfile() == (
        "FROM scratch\n"
        "COPY coredns /coredns\n"
        "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\n"
        "USER 0\n"
        'ENTRYPOINT ["/coredns"]\n'
    )


def test_the_policy_engine_image_runs_what_its_manifest_names_first() -> None:
    recipe = images.recipe_for("registry.k8s.io/networking/kube-network-policies:v0.8.0")
    dockerfile = recipe.dockerfile()
    assert "ENTRYPOINT" not in dockerfile
    assert dockerfile.endswith('CMD ["/bin/netpol"]\n')


def test_the_sandbox_image_is_read_from_kinds_containerd_config() -> None:
    config = (
        '[plugins."io.containerd.grpc.v1.cri"]\n  sandbox_image = "registry.k8s.io/pause:3.10"\n'
    )
    assert nodeimage.sandbox_image(config) == "registry.k8s.io/pause:3.10"
    with pytest.raises(nodeimage.NodeImageError):
        nodeimage.sandbox_image("version = 2\n")


def test_the_default_cni_manifest_names_the_preloaded_images_and_never_pulls() -> None:
    template = (nodeimage.FILES / "default-cni.yaml").read_text()
    rendered = nodeimage.render_default_cni(template, "abc123", "v0.8.0")
    assert "would you kindly template this file" in rendered  # kind fills in the pod subnet
    documents = list(yaml.safe_load_all(rendered.replace("{{ .PodSubnet }}", "10.244.0.0/16")))
    daemonsets = {d["metadata"]["name"]: d for d in documents if d["kind"] == "DaemonSet"}
    assert set(daemonsets) == {"rebound-cni", "kube-network-policies"}
    containers = [d["spec"]["template"]["spec"]["containers"][0] for d in daemonsets.values()]
    assert {c["image"] for c in containers} == {
        "rebound-cni:abc123",
        "registry.k8s.io/networking/kube-network-policies:v0.8.0",
    }
    assert all(c["imagePullPolicy"] == "Never" for c in containers)
    with pytest.raises(nodeimage.NodeImageError, match="placeholder"):
        nodeimage.render_default_cni(template.replace("@CNI_DAEMON_TAG@", "@X@"), "a", "b")


def test_containerd_names_docker_references_as_docker_io() -> None:
    assert nodeimage.normalized("rebound-cni:abc") == "docker.io/library/rebound-cni:abc"
    assert nodeimage.normalized("team/img:1") == "docker.io/team/img:1"
    assert nodeimage.normalized("registry.k8s.io/pause:3.10") == "registry.k8s.io/pause:3.10"
    assert nodeimage.normalized("localhost/x:1") == "localhost/x:1"


def test_the_node_recipe_changes_with_any_input() -> None:
    base = nodeimage.recipe("sha256:b", {"a:1": "sha256:1"}, {"/usr/bin/kubelet": "d"}, "v1.37.2")
    assert base == nodeimage.recipe(
        "sha256:b", {"a:1": "sha256:1"}, {"/usr/bin/kubelet": "d"}, "v1.37.2"
    )
    assert base != nodeimage.recipe(
        "sha256:c", {"a:1": "sha256:1"}, {"/usr/bin/kubelet": "d"}, "v1.37.2"
    )
    assert base != nodeimage.recipe(
        "sha256:b", {"a:1": "sha256:2"}, {"/usr/bin/kubelet": "d"}, "v1.37.2"
    )
    assert base != nodeimage.recipe(
        "sha256:b", {"a:1": "sha256:1"}, {"/usr/bin/kubelet": "e"}, "v1.37.2"
    )


def test_the_rootfs_recipe_follows_its_packages() -> None:
    assert rootfs.NODE.recipe() != rootfs.TOOLS.recipe()
    more = rootfs.Rootfs(rootfs.TOOLS.tag, (*rootfs.TOOLS.packages, "socat"))
    assert more.recipe() != rootfs.TOOLS.recipe()
    argv = rootfs.TOOLS.debootstrap_argv(Path("/t"), "http://m")
    assert argv[:2] == ["debootstrap", "--variant=minbase"]
    assert argv[-3:] == ["bookworm", "/t", "http://m"]
    assert "containerd" in rootfs.NODE.packages and "systemd" in rootfs.NODE.packages


def test_the_kind_config_has_two_schedulable_nodes_and_kubelet_accepts_cgroup_v1() -> None:
    document = yaml.safe_load(cluster.config(workers=1))
    assert [node["role"] for node in document["nodes"]] == ["control-plane", "worker"]
    patches = [yaml.safe_load(patch) for patch in document["kubeadmConfigPatches"]]
    assert {"kind": "KubeletConfiguration", "failCgroupV1": False} in patches
    assert {"kind": "InitConfiguration", "nodeRegistration": {"taints": []}} in patches
    assert "containerdConfigPatches" not in document
    restricted = yaml.safe_load(cluster.config(workers=1, restrict_oom_score_adj=True))
    assert "restrict_oom_score_adj = true" in restricted["containerdConfigPatches"][0]


def test_a_node_container_without_a_node_object_is_named() -> None:
    containers = ["rebound-control-plane", "rebound-worker"]
    assert cluster.unregistered(containers, ["node/rebound-control-plane"]) == ["rebound-worker"]
    registered = ["node/rebound-control-plane", "node/rebound-worker"]
    assert cluster.unregistered(containers, registered) == []


def test_a_failed_create_is_summed_up_by_its_error_not_its_stack_trace() -> None:
    output = (
        "I1207 round_trippers.go:632] POST ...\n"
        "error: error execution phase wait-control-plane: connection refused\n"
        "k8s.io/kubernetes/cmd/kubeadm/app.Run\n"
        "\truntime/asm_amd64.s:1771\n"
    )
    assert cluster.failure_line(output) == (
        "error: error execution phase wait-control-plane: connection refused"
    )
    assert cluster.failure_line("one\nlast\n") == "last"
