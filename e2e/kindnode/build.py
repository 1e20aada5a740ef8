"""`make kind-image`: everything a kind node needs, from source, in order, cached.

1. binaries: Kubernetes' (control plane, kubeadm, kubelet, kube-proxy, kubectl, the pod
   network daemon) from the local cluster's build module; kind, crictl, CoreDNS and
   kube-network-policies `go install`ed; pause compiled from Kubernetes' pause.c;
2. images: every reference `kubeadm config images list` prints, containerd's sandbox image
   and the two network DaemonSets' images, under exactly those names;
3. the node base (kind's files on a Debian root filesystem) and the node image itself.

Each step is skipped when its output exists for the same inputs, so a second run takes
seconds.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

from kindnode import engine, gobuild, host, images, nodeimage, rootfs
from localcluster import build as k8s
from localcluster import packages

KUBERNETES_VERSION = k8s.KUBERNETES_VERSION
NODE_IMAGE = f"rebound-kind-node:{KUBERNETES_VERSION}"
# What building the node image runs on the host.
TOOLS = ("docker", "dockerd", "runc", "iptables", "debootstrap", "gcc")
Say = Callable[[str], None]


class KindBuildError(RuntimeError):
    """The node image cannot be built; one line."""


def log_file() -> Path:
    """The build log (every command and its output)."""
    folder = gobuild.cache_root()
    folder.mkdir(parents=True, exist_ok=True)
    return folder / "build.log"


def kind_files() -> Path:
    """kind's `images/base/files` tree, from the kind module (downloaded by the proxy)."""
    source = gobuild.module_dir("sigs.k8s.io/kind", gobuild.KIND_VERSION, log_file())
    return source / "images" / "base" / "files"


def prepare_host(say: Say) -> None:
    """Packages installed, the machine able to run kind, dockerd configured and answering."""
    problem = packages.ensure(TOOLS, say)
    if problem:
        raise KindBuildError(problem)
    found = host.problems()
    if found:
        raise KindBuildError(found[0])
    try:
        engine.ensure(say)
    except engine.EngineError as error:
        raise KindBuildError(str(error)) from None


def node_image(say: Say, tag: str = NODE_IMAGE) -> str:
    """Build (or reuse) the node image; its tag. One build at a time per cache (another
    checkout's `make kind-image` waits)."""
    with k8s.exclusive(gobuild.cache_root()):
        return _node_image(say, tag)


def _node_image(say: Say, tag: str) -> str:
    started = time.monotonic()
    log = log_file()
    prepare_host(say)
    try:
        kube_bin = gobuild.kubernetes_binaries(log, say)
        kind = gobuild.install(gobuild.kind_tool(), log, say)
        crictl = gobuild.install(gobuild.crictl_tool(), log, say)
        netpol = gobuild.network_policies_binary(log, say)
        asked = images.kubeadm_images(kube_bin / "kubeadm", KUBERNETES_VERSION)
        coredns_tag = next(images.split_reference(r)[1] for r in asked if "/coredns:" in r)
        pause_tag = next(images.split_reference(r)[1] for r in asked if "/pause:" in r)
        coredns = gobuild.coredns_binary(coredns_tag, log, say)
        pause = gobuild.pause_binary(pause_tag, log, say)
    except (gobuild.GoBuildError, images.ImageError, StopIteration) as error:
        raise KindBuildError(str(error) or "kubeadm names no CoreDNS or pause image") from None
    files = kind_files()
    sandbox = nodeimage.sandbox_image((files / "etc" / "containerd" / "config.toml").read_text())
    cni_tag = gobuild.cni_daemon_tag()
    references = [
        *asked,
        sandbox,
        f"{images.NETWORK_POLICIES_IMAGE}:{gobuild.NETWORK_POLICIES_VERSION}",
        f"{images.CNI_DAEMON_IMAGE}:{cni_tag}",
    ]
    binaries = {
        "kube-apiserver": kube_bin / "kube-apiserver",
        "kube-controller-manager": kube_bin / "kube-controller-manager",
        "kube-scheduler": kube_bin / "kube-scheduler",
        "kube-proxy": kube_bin / "kube-proxy",
        "etcd": kube_bin / "etcd",
        "coredns": coredns,
        "pause": pause,
        "netpol": netpol,
        "rebound-cni": kube_bin / gobuild.cni_daemon_name(),
    }
    try:
        rootfs.ensure(rootfs.TOOLS, say, log)
        recipes = images.plan(references)
        images.build(recipes, binaries, say, log)
        template = (nodeimage.FILES / "default-cni.yaml").read_text()
        default_cni = nodeimage.render_default_cni(
            template, cni_tag, gobuild.NETWORK_POLICIES_VERSION
        )
        base_id = nodeimage.build_base(files, default_cni, log, say)
    except (rootfs.RootfsError, images.ImageError, nodeimage.NodeImageError) as error:
        raise KindBuildError(str(error)) from None
    node_binaries = {
        "/usr/bin/kubeadm": kube_bin / "kubeadm",
        "/usr/bin/kubelet": kube_bin / "kubelet",
        "/usr/bin/kubectl": kube_bin / "kubectl",
        "/usr/local/bin/crictl": crictl,
    }
    image_ids = {recipe.reference: images.image_id(recipe.reference) or "" for recipe in recipes}
    digests = {path: nodeimage.file_digest(file) for path, file in node_binaries.items()}
    wanted = nodeimage.recipe(base_id, image_ids, digests, KUBERNETES_VERSION)
    if nodeimage.existing(tag) != wanted:
        inputs = nodeimage.NodeInputs(
            KUBERNETES_VERSION, node_binaries, [r.reference for r in recipes]
        )
        try:
            nodeimage.assemble(tag, inputs, wanted, log, say)
        except nodeimage.NodeImageError as error:
            raise KindBuildError(str(error)) from None
        say(f"built {tag} in {time.monotonic() - started:.0f} s (kind CLI: {kind})")
    return tag


def kind_binary() -> Path:
    """The kind CLI built here (built first if missing)."""
    return gobuild.install(gobuild.kind_tool(), log_file(), lambda line: print(line, flush=True))


def environment() -> dict[str, str]:
    """os.environ with the cached kubectl first on PATH (no client/server skew)."""
    return {**os.environ, "PATH": f"{k8s.bin_dir()}:{os.environ.get('PATH', '')}"}
