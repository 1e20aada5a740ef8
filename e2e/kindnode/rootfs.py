"""Debian root filesystems as Docker images, made with debootstrap (no registry needed).

Two are needed: the node's (systemd, containerd, runc, the CNI plugins and the tools kind's
base image installs) and a small one for the node's own daemons that call iptables/nft
(kube-proxy, the pod-network daemon). Each image carries a label with the hash of its recipe,
so a changed package list rebuilds it and an unchanged one is reused.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from kindnode import gobuild

RECIPE_LABEL = "dev.rebound.rootfs-recipe"
SUITE = "bookworm"
# Removed after debootstrap: package caches, docs, man pages, translations.
SLIM = (
    "var/cache/apt/archives/*.deb",
    "var/lib/apt/lists/*",
    "usr/share/doc/*",
    "usr/share/man/*",
    "usr/share/locale/*",
    "usr/share/info/*",
)
Say = Callable[[str], None]


class RootfsError(RuntimeError):
    """debootstrap or the import failed; the message names the log."""


@dataclass(frozen=True)
class Rootfs:
    """One debootstrapped root filesystem and the image tag it is imported as."""

    tag: str
    packages: tuple[str, ...]
    variant: str = "minbase"

    def recipe(self) -> str:
        """A short hash of everything that decides the image's content."""
        text = "\n".join([SUITE, self.variant, *sorted(self.packages), "slim:" + ",".join(SLIM)])
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def debootstrap_argv(self, target: Path, mirror: str) -> list[str]:
        """The debootstrap command line that makes this root filesystem in `target`."""
        return [
            "debootstrap",
            f"--variant={self.variant}",
            f"--include={','.join(sorted(self.packages))}",
            SUITE,
            str(target),
            mirror,
        ]


# kind's base image packages (images/base/Dockerfile), minus network storage and its test
# tools, plus Debian's containerd, runc and CNI plugins (kind builds those from source).
NODE = Rootfs(
    tag="rebound-kind-rootfs:node",
    packages=(
        "systemd",
        "conntrack",
        "iptables",
        "nftables",
        "iproute2",
        "ethtool",
        "util-linux",
        "mount",
        "kmod",
        "libseccomp2",
        "pigz",
        "fuse-overlayfs",
        "bash",
        "ca-certificates",
        "jq",
        "procps",
        "containerd",
        "runc",
        "containernetworking-plugins",
    ),
)
# What kube-proxy (iptables mode) and the pod-network daemon (nft, ip) call.
TOOLS = Rootfs(
    tag="rebound-kind-rootfs:tools",
    packages=("iptables", "nftables", "conntrack", "iproute2", "ca-certificates"),
)


def image_recipe(tag: str) -> str | None:
    """The recipe label of a local image, or None when there is no such image."""
    result = subprocess.run(
        [
            "docker",
            "image",
            "inspect",
            "-f",
            f'{{{{ index .Config.Labels "{RECIPE_LABEL}" }}}}',
            tag,
        ],
        capture_output=True,
        text=True,
    )
    return result.stdout.strip() if result.returncode == 0 else None


def ensure(rootfs: Rootfs, say: Say, log: Path) -> str:
    """The image tag of `rootfs`, debootstrapped and imported unless it exists already."""
    if image_recipe(rootfs.tag) == rootfs.recipe():
        return rootfs.tag
    if shutil.which("debootstrap") is None:
        raise RootfsError("debootstrap is not installed (apt-get install debootstrap)")
    mirror = os.environ.get("DEBIAN_MIRROR", "http://deb.debian.org/debian")
    say(f"debootstrap {SUITE} for {rootfs.tag} ({len(rootfs.packages)} packages) ...")
    # Under the cache, not /tmp: debootstrap makes device nodes, which a tmpfs /tmp mounted
    # nodev (Debian 13, Fedora) refuses ("mounted with noexec or nodev").
    work = gobuild.cache_root() / "work"
    work.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="rebound-rootfs-", dir=work) as folder:
        target = Path(folder) / "root"
        with log.open("a") as sink:
            argv = rootfs.debootstrap_argv(target, mirror)
            sink.write(f"$ {' '.join(argv)}\n")
            sink.flush()
            if subprocess.run(argv, stdout=sink, stderr=subprocess.STDOUT).returncode != 0:
                raise RootfsError(f"debootstrap for {rootfs.tag} failed; see {log}")
        for pattern in SLIM:
            for path in target.glob(pattern):
                if path.is_dir() and not path.is_symlink():
                    shutil.rmtree(path)
                else:
                    path.unlink()
        tar = subprocess.Popen(["tar", "-C", str(target), "-c", "."], stdout=subprocess.PIPE)
        imported = subprocess.run(
            [
                "docker",
                "import",
                "--change",
                "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                "--change",
                f"LABEL {RECIPE_LABEL}={rootfs.recipe()}",
                "-",
                rootfs.tag,
            ],
            stdin=tar.stdout,
            capture_output=True,
            text=True,
        )
        tar.wait()
        if imported.returncode != 0 or tar.returncode != 0:
            raise RootfsError(f"docker import {rootfs.tag}: {imported.stderr.strip()}")
    return rootfs.tag
