"""Assemble the kind node image: base (kind's files on a Debian root filesystem), Kubernetes
binaries, and every image the node will run preloaded into its containerd.

As `kind build node-image` does, minus its pulls: run the base with `sleep`, copy kubeadm,
kubelet, kubectl and crictl in, start containerd inside, import each image (`docker save`
| `ctr images import`, pinned so the kubelet never garbage-collects it), stop containerd,
`docker commit`. The image carries a label with the hash of everything that went in; an
image with the same hash is reused.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from kindnode import images, rootfs

FILES = Path(__file__).with_name("files")
NODE_BASE = "rebound-kind-base:bookworm"
RECIPE_LABEL = "dev.rebound.node-recipe"
ENTRYPOINT = '["/usr/local/bin/entrypoint", "/sbin/init"]'
PINNED = "io.cri-containerd.pinned=pinned"
Say = Callable[[str], None]


class NodeImageError(RuntimeError):
    """A step of the node image build failed; one line."""


@dataclass(frozen=True)
class NodeInputs:
    """What goes into the node image besides its base."""

    kubernetes_version: str
    binaries: dict[str, Path]  # node path -> host file
    images: list[str]  # references, preloaded and pinned


def sandbox_image(containerd_config: str) -> str:
    """The `sandbox_image` containerd's configuration names (the pause image it runs)."""
    match = re.search(r'^\s*sandbox_image\s*=\s*"([^"]+)"', containerd_config, re.MULTILINE)
    if not match:
        raise NodeImageError("kind's containerd config names no sandbox_image")
    return match[1]


def render_default_cni(template: str, cni_tag: str, network_policies_tag: str) -> str:
    """The default CNI manifest with the preloaded images' tags filled in (kind fills in the
    pod subnet itself)."""
    rendered = template.replace("@CNI_DAEMON_TAG@", cni_tag).replace(
        "@NETWORK_POLICIES_TAG@", network_policies_tag
    )
    if "@" in re.sub(r"#.*", "", rendered):
        raise NodeImageError("default-cni.yaml has a placeholder left")
    return rendered


def recipe(base_id: str, image_ids: dict[str, str], binaries: dict[str, str], version: str) -> str:
    """A hash of everything in the node image: base, preloaded images, binaries, version."""
    document = {"base": base_id, "images": image_ids, "binaries": binaries, "version": version}
    return hashlib.sha256(json.dumps(document, sort_keys=True).encode()).hexdigest()[:20]


def file_digest(path: Path) -> str:
    """sha256 of a file."""
    digest = hashlib.sha256()
    with path.open("rb") as source:
        for block in iter(lambda: source.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def label_of(reference: str, label: str) -> str | None:
    """A label of a local image (None: no image or no label)."""
    result = subprocess.run(
        [
            "docker",
            "image",
            "inspect",
            "-f",
            f'{{{{ index .Config.Labels "{label}" }}}}',
            reference,
        ],
        capture_output=True,
        text=True,
    )
    value = result.stdout.strip()
    return value if result.returncode == 0 and value not in ("", "<no value>") else None


def _run(argv: list[str], log: Path, what: str, **kwargs: object) -> None:
    with log.open("a") as sink:
        sink.write(f"$ {' '.join(argv)}\n")
        sink.flush()
        result = subprocess.run(argv, stdout=sink, stderr=subprocess.STDOUT, **kwargs)  # type: ignore[call-overload]
    if result.returncode != 0:
        raise NodeImageError(f"{what} failed; see {log}")


def build_base(kind_files: Path, default_cni: str, log: Path, say: Say) -> str:
    """`docker build` the node base from the NODE root filesystem and kind's files; its ID."""
    rootfs.ensure(rootfs.NODE, say, log)
    with tempfile.TemporaryDirectory(prefix="rebound-node-base-") as folder:
        context = Path(folder)
        shutil.copytree(kind_files, context / "kind")
        for path in (context / "kind").rglob("*"):
            path.chmod(0o755 if path.is_dir() else 0o644)
        shutil.copy(FILES / "node-base.Dockerfile", context / "Dockerfile")
        (context / "default-cni.yaml").write_text(default_cni)
        _run(
            [
                "docker",
                "build",
                "-q",
                "--build-arg",
                f"ROOTFS={rootfs.NODE.tag}",
                "-t",
                NODE_BASE,
                str(context),
            ],
            log,
            f"docker build {NODE_BASE}",
        )
    base_id = images.image_id(NODE_BASE)
    assert base_id
    return base_id


def assemble(tag: str, inputs: NodeInputs, node_recipe: str, log: Path, say: Say) -> None:
    """Run the base, put binaries and images in, commit it as `tag`."""
    name = f"rebound-kind-build-{secrets.token_hex(4)}"
    say(f"assembling {tag} ({len(inputs.images)} images preloaded) ...")
    _run(
        [
            "docker",
            "run",
            "-d",
            "--privileged",
            "--name",
            name,
            "--entrypoint",
            "sleep",
            NODE_BASE,
            "infinity",
        ],
        log,
        "starting the build container",
    )
    try:
        for node_path, host_file in inputs.binaries.items():
            _run(
                ["docker", "cp", str(host_file), f"{name}:{node_path}"], log, f"copying {node_path}"
            )
        version_script = (
            f"echo {inputs.kubernetes_version} > /kind/version && "
            f"chown root:root {' '.join(inputs.binaries)} && chmod 755 {' '.join(inputs.binaries)}"
        )
        _run(["docker", "exec", name, "sh", "-c", version_script], log, "writing /kind/version")
        _run(
            ["docker", "exec", name, "bash", "-c", CONTAINERD_START],
            log,
            "starting containerd in the build container",
        )
        for reference in inputs.images:
            save = subprocess.Popen(["docker", "save", reference], stdout=subprocess.PIPE)
            _run(
                [
                    "docker",
                    "exec",
                    "-i",
                    name,
                    "ctr",
                    "--namespace=k8s.io",
                    "images",
                    "import",
                    "--all-platforms",
                    "--no-unpack",
                    "--digests",
                    "-",
                ],
                log,
                f"importing {reference}",
                stdin=save.stdout,
            )
            if save.wait() != 0:
                raise NodeImageError(f"docker save {reference} failed")
        _run(
            ["docker", "exec", name, "bash", "-c", pin_script(inputs.images)],
            log,
            "pinning the preloaded images",
        )
        _run(["docker", "exec", name, "bash", "-c", CONTAINERD_STOP], log, "stopping containerd")
        _run(
            [
                "docker",
                "commit",
                "--change",
                f"ENTRYPOINT {ENTRYPOINT}",
                "--change",
                "CMD []",
                "--change",
                f"LABEL {RECIPE_LABEL}={node_recipe}",
                name,
                tag,
            ],
            log,
            f"docker commit {tag}",
        )
    finally:
        subprocess.run(["docker", "rm", "-f", "-v", name], capture_output=True)


CONTAINERD_START = """set -e
nohup containerd >/var/log/containerd-build.log 2>&1 &
for i in $(seq 1 50); do [ -S /run/containerd/containerd.sock ] && break; sleep 0.2; done
ctr version >/dev/null
"""
CONTAINERD_STOP = """pkill containerd
for i in $(seq 1 50); do pgrep -x containerd >/dev/null || break; sleep 0.2; done
! pgrep -x containerd >/dev/null
rm -rf /var/log/containerd-build.log /run/containerd /tmp/*
"""


def pin_script(references: list[str]) -> str:
    """Label every preloaded image pinned (under the name containerd gave it on import)."""
    names = " ".join(normalized(reference) for reference in references)
    label = f"ctr -n k8s.io images label $image {PINNED} >/dev/null"
    return f"set -e\nfor image in {names}; do {label}; done\n"


def normalized(reference: str) -> str:
    """The name containerd stores a docker image reference under (docker.io/library/...)."""
    first = reference.split("/", 1)[0]
    if "/" not in reference:
        return f"docker.io/library/{reference}"
    if "." not in first and ":" not in first and first != "localhost":
        return f"docker.io/{reference}"
    return reference


def existing(tag: str) -> str | None:
    """The recipe label of the node image `tag` if it exists."""
    return label_of(tag, RECIPE_LABEL)
