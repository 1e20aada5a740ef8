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

import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
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


@contextmanager
def timed(say: Say, what: str) -> Iterator[None]:
    """Say how long a step took, when it took long enough to matter (so cached runs stay quiet)."""
    started = time.monotonic()
    yield
    elapsed = time.monotonic() - started
    if elapsed >= 5:
        say(f"{what}: {elapsed:.0f} s")


def _binaries(log: Path, say: Say) -> tuple[dict[str, Path], list[str]]:
    """Every binary the node and its images need (built where missing), and the images
    kubeadm asks for."""
    try:
        with timed(say, "Kubernetes binaries"):
            kube_bin = gobuild.kubernetes_binaries(log, say)
        with timed(say, "kind and crictl"):
            gobuild.install(gobuild.kind_tool(), log, say)
            crictl = gobuild.install(gobuild.crictl_tool(), log, say)
        with timed(say, "kube-network-policies"):
            netpol = gobuild.network_policies_binary(log, say)
        asked = images.kubeadm_images(kube_bin / "kubeadm", KUBERNETES_VERSION)
        coredns_tag = next(images.split_reference(r)[1] for r in asked if "/coredns:" in r)
        pause_tag = next(images.split_reference(r)[1] for r in asked if "/pause:" in r)
        with timed(say, "CoreDNS"):
            coredns = gobuild.coredns_binary(coredns_tag, log, say)
        pause = gobuild.pause_binary(pause_tag, log, say)
    except (gobuild.GoBuildError, images.ImageError, StopIteration) as error:
        raise KindBuildError(str(error) or "kubeadm names no CoreDNS or pause image") from None
    binaries = {name: kube_bin / name for name in (*k8s.BINARIES, *k8s.NODE_COMPONENTS)}
    binaries.update(
        {
            "coredns": coredns,
            "pause": pause,
            "netpol": netpol,
            "rebound-cni": kube_bin / gobuild.cni_daemon_name(),
            "crictl": crictl,
        }
    )
    return binaries, asked


def _node_image(say: Say, tag: str) -> str:
    started = time.monotonic()
    log = log_file()
    prepare_host(say)
    # debootstrap waits on the network and dpkg more than on the CPU: run both root
    # filesystems beside the Go builds.
    with ThreadPoolExecutor(2) as pool:
        filesystems = [
            pool.submit(rootfs.ensure, fs, say, log) for fs in (rootfs.TOOLS, rootfs.NODE)
        ]
        binaries, asked = _binaries(log, say)
        try:
            with timed(say, "root filesystems (after the binaries)"):
                for built in filesystems:
                    built.result()
        except rootfs.RootfsError as error:
            raise KindBuildError(str(error)) from None
    files = kind_files()
    sandbox = nodeimage.sandbox_image((files / "etc" / "containerd" / "config.toml").read_text())
    cni_tag = gobuild.cni_daemon_tag()
    references = [
        *asked,
        sandbox,
        f"{images.NETWORK_POLICIES_IMAGE}:{gobuild.NETWORK_POLICIES_VERSION}",
        f"{images.CNI_DAEMON_IMAGE}:{cni_tag}",
    ]
    try:
        recipes = images.plan(references)
        with timed(say, "images"):
            images.build(recipes, binaries, say, log)
        template = (nodeimage.FILES / "default-cni.yaml").read_text()
        default_cni = nodeimage.render_default_cni(
            template, cni_tag, gobuild.NETWORK_POLICIES_VERSION
        )
        base_id = nodeimage.build_base(files, default_cni, log, say)
    except (rootfs.RootfsError, images.ImageError, nodeimage.NodeImageError) as error:
        raise KindBuildError(str(error)) from None
    node_binaries = {
        "/usr/bin/kubeadm": binaries["kubeadm"],
        "/usr/bin/kubelet": binaries["kubelet"],
        "/usr/bin/kubectl": binaries["kubectl"],
        "/usr/local/bin/crictl": binaries["crictl"],
    }
    image_ids = {recipe.reference: images.image_id(recipe.reference) or "" for recipe in recipes}
    digests = {path: nodeimage.file_digest(file) for path, file in node_binaries.items()}
    wanted = nodeimage.recipe(base_id, image_ids, digests, KUBERNETES_VERSION)
    if nodeimage.existing(tag) != wanted:
        inputs = nodeimage.NodeInputs(
            KUBERNETES_VERSION, node_binaries, [r.reference for r in recipes]
        )
        try:
            with timed(say, "node image assembly"):
                nodeimage.assemble(tag, inputs, wanted, log, say)
        except nodeimage.NodeImageError as error:
            raise KindBuildError(str(error)) from None
        say(f"built {tag} in {time.monotonic() - started:.0f} s")
    return tag
