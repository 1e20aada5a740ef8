"""The container images a kind node runs, built from local binaries under the exact names
kubeadm and containerd ask for, so that no node ever pulls.

`plan()` is pure: it maps every image reference `kubeadm config images list` prints (plus
containerd's sandbox image and the node's network daemons) to a recipe; `build()` runs
`docker build` for each (docker's cache makes an unchanged image a no-op).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from kindnode.rootfs import TOOLS

NETWORK_POLICIES_IMAGE = "registry.k8s.io/networking/kube-network-policies"
CNI_DAEMON_IMAGE = "rebound-cni"
Say = Callable[[str], None]


class ImageError(RuntimeError):
    """An image cannot be planned or built; one line."""


@dataclass(frozen=True)
class ImageRecipe:
    """How one image is made: a base, one binary at a path, its entrypoint and user."""

    reference: str
    binary: str  # the key of the binary in the `binaries` map handed to build()
    path: str  # where the binary lives in the image
    base: str = "scratch"
    user: str = ""
    # None: the binary is the entrypoint; () with `cmd`: no entrypoint, as upstream images
    # whose manifests pass the binary's path as the first argument.
    entrypoint: tuple[str, ...] | None = None
    cmd: tuple[str, ...] = ()

    def dockerfile(self) -> str:
        """The Dockerfile (classic builder: no BuildKit-only syntax)."""
        lines = [
            f"FROM {self.base}",
            f"COPY {self.binary} {self.path}",
            "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        ]
        if self.user:
            lines.append(f"USER {self.user}")
        entrypoint = (self.path,) if self.entrypoint is None else self.entrypoint
        if entrypoint:
            lines.append(f"ENTRYPOINT {json.dumps(list(entrypoint))}")
        if self.cmd:
            lines.append(f"CMD {json.dumps(list(self.cmd))}")
        return "\n".join(lines) + "\n"


def split_reference(reference: str) -> tuple[str, str]:
    """registry.k8s.io/coredns/coredns:v1.14.6 -> ("registry.k8s.io/coredns/coredns", "v1.14.6")."""
    repository, colon, tag = reference.rpartition(":")
    if not colon or "/" in tag or not repository:
        raise ImageError(f"image reference without a tag: {reference!r}")
    return repository, tag


def recipe_for(reference: str) -> ImageRecipe:
    """The recipe of one image kubeadm or the node asks for (ImageError if unknown)."""
    repository, _ = split_reference(reference)
    component = repository.rsplit("/", 1)[-1]
    if component in ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "etcd"):
        return ImageRecipe(reference, component, f"/usr/local/bin/{component}")
    if component == "kube-proxy":
        return ImageRecipe(reference, component, "/usr/local/bin/kube-proxy", base=TOOLS.tag)
    if component == "coredns":
        # kubeadm adds only NET_BIND_SERVICE; upstream's image gets :53 from a file
        # capability on the binary, which `docker build` cannot set here: run it as root.
        return ImageRecipe(reference, "coredns", "/coredns", user="0")
    if component == "pause":
        return ImageRecipe(reference, "pause", "/pause", user="65535:65535")
    if repository == NETWORK_POLICIES_IMAGE:
        # Its manifest runs `args: [/bin/netpol, --flags...]`, so like upstream's image: no
        # entrypoint, CMD the binary.
        return ImageRecipe(reference, "netpol", "/bin/netpol", entrypoint=(), cmd=("/bin/netpol",))
    if repository == CNI_DAEMON_IMAGE:
        return ImageRecipe(reference, "rebound-cni", "/usr/local/bin/rebound-cni", base=TOOLS.tag)
    raise ImageError(f"no recipe for the image {reference} (kubeadm asks for it)")


def plan(references: Iterable[str]) -> list[ImageRecipe]:
    """Recipes for every distinct reference, in a stable order."""
    return [recipe_for(reference) for reference in sorted(set(references))]


def kubeadm_images(kubeadm: Path, kubernetes_version: str) -> list[str]:
    """What `kubeadm config images list` asks for at `kubernetes_version`."""
    result = subprocess.run(
        [str(kubeadm), "config", "images", "list", "--kubernetes-version", kubernetes_version],
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        raise ImageError(f"kubeadm config images list: {result.stderr.strip()}")
    return [line.strip() for line in result.stdout.splitlines() if line.strip()]


def image_id(reference: str) -> str | None:
    """The local image's ID, or None when docker has no such image."""
    result = subprocess.run(
        ["docker", "image", "inspect", "-f", "{{.Id}}", reference], capture_output=True, text=True
    )
    return result.stdout.strip() if result.returncode == 0 else None


def build(recipes: list[ImageRecipe], binaries: dict[str, Path], say: Say, log: Path) -> None:
    """`docker build` every recipe with its binary (cached layers make repeats cheap)."""
    for recipe in recipes:
        source = binaries.get(recipe.binary)
        if source is None or not source.is_file():
            raise ImageError(f"no binary {recipe.binary} for {recipe.reference}")
        before = image_id(recipe.reference)
        with tempfile.TemporaryDirectory(prefix="rebound-image-") as folder:
            context = Path(folder)
            shutil.copy2(source, context / recipe.binary)
            (context / "Dockerfile").write_text(recipe.dockerfile())
            with log.open("a") as sink:
                sink.write(f"$ docker build -t {recipe.reference}\n")
                sink.flush()
                result = subprocess.run(
                    ["docker", "build", "-q", "-t", recipe.reference, str(context)],
                    stdout=sink,
                    stderr=subprocess.STDOUT,
                )
        if result.returncode != 0:
            raise ImageError(f"docker build {recipe.reference} failed; see {log}")
        if image_id(recipe.reference) != before:
            say(f"built {recipe.reference}")
