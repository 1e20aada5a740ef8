"""Build etcd, kube-apiserver, kube-controller-manager and kube-scheduler from the Go module proxy.

The same build module also builds the node's binaries kind needs (kubeadm, kubelet,
kube-proxy; `kindnode`), so every Kubernetes binary has one version and one set of ldflags.

`k8s.io/kubernetes` requires its staging modules at `v0.0.0`, which no proxy serves. The build
module written here replaces each of them with its published `v0.MINOR.PATCH`, read from the
go.mod that the proxy returns for `k8s.io/kubernetes@vX.Y.Z` (never a hard-coded list). Binaries
are cached outside the repository, keyed by version, so a second run only checks they exist.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

KUBERNETES_VERSION = "v1.37.2"
COMPONENTS = ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl")
BINARIES = ("etcd", *COMPONENTS)
NODE_COMPONENTS = ("kubeadm", "kubelet", "kube-proxy")
ETCD_SERVER = "go.etcd.io/etcd/server/v3"
ETCD_MAIN = Path(__file__).with_name("gomod") / "etcd" / "main.go"
_VERSION = re.compile(r"^v1\.(\d+)\.(\d+)$")


class BuildError(RuntimeError):
    """A build step failed; the message names the step and its log file."""


@dataclass(frozen=True)
class GoModule:
    """What the build needs from one go.mod: requirements and non-local replacements."""

    requires: dict[str, str]
    replaces: dict[str, tuple[str, str]]


def cache_root() -> Path:
    """Where built binaries live: $REBOUND_CLUSTER_CACHE, else ~/.cache/rebound/cluster."""
    configured = os.environ.get("REBOUND_CLUSTER_CACHE")
    return Path(configured) if configured else Path.home() / ".cache" / "rebound" / "cluster"


def bin_dir(version: str = KUBERNETES_VERSION) -> Path:
    """The cache folder holding one version's binaries."""
    return cache_root() / version / "bin"


def staging_version(kubernetes_version: str) -> str:
    """v1.37.2 -> v0.37.2: the tag the staging modules are published under."""
    match = _VERSION.match(kubernetes_version)
    if not match:
        raise ValueError(f"not a Kubernetes release version: {kubernetes_version!r}")
    return f"v0.{match[1]}.{match[2]}"


def parse_go_mod_json(document: dict[str, Any]) -> GoModule:
    """Requirements and replacements of a go.mod from `go mod edit -json`'s output.

    Replacements that point at a local directory (kubernetes' ./staging/...) are dropped: they
    only make sense inside the kubernetes repository.
    """
    requires = {
        str(entry["Path"]): str(entry["Version"]) for entry in document.get("Require") or []
    }
    replaces: dict[str, tuple[str, str]] = {}
    for entry in document.get("Replace") or []:
        new = entry["New"]
        if new.get("Version"):
            replaces[str(entry["Old"]["Path"])] = (str(new["Path"]), str(new["Version"]))
    return GoModule(requires=requires, replaces=replaces)


def staging_modules(module: GoModule) -> list[str]:
    """The modules kubernetes requires at v0.0.0: its staging repositories."""
    return sorted(path for path, version in module.requires.items() if version == "v0.0.0")


def render_go_mod(kubernetes_version: str, go_directive: str, module: GoModule) -> str:
    """The build module's go.mod: kubernetes plus one replace per staging module."""
    pinned = staging_version(kubernetes_version)
    lines = [
        "module rebound.dev/localcluster",
        "",
        f"go {go_directive}",
        "",
        f"require k8s.io/kubernetes {kubernetes_version}",
        "",
        "replace (",
    ]
    lines += [f"\t{path} => {path} {pinned}" for path in staging_modules(module)]
    lines += [
        f"\t{old} => {new} {version}" for old, (new, version) in sorted(module.replaces.items())
    ]
    lines += [")", ""]
    return "\n".join(lines)


def _run(step: str, argv: list[str], cwd: Path, log: Path, env: dict[str, str]) -> str:
    with log.open("a") as sink:
        sink.write(f"$ {' '.join(argv)}\n")
        sink.flush()
        result = subprocess.run(
            argv, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=sink, text=True
        )
        sink.write(result.stdout)
    if result.returncode != 0:
        raise BuildError(f"{step} failed (exit {result.returncode}); see {log}")
    return result.stdout


def ldflags(kubernetes_version: str) -> str:
    """Version stamps, so `kubectl version` shows the real server version."""
    match = _VERSION.match(kubernetes_version)
    assert match
    package = "k8s.io/component-base/version"
    stamps = {
        "gitVersion": kubernetes_version,
        "gitMajor": "1",
        "gitMinor": match[1],
        "gitTreeState": "clean",
        "buildDate": "1970-01-01T00:00:00Z",
    }
    return "-s -w " + " ".join(f"-X {package}.{key}={value}" for key, value in stamps.items())


@contextmanager
def exclusive(folder: Path) -> Iterator[None]:
    """Hold an exclusive lock on `folder` (created if needed): two builds into one cache,
    from two checkouts at once, would overwrite each other's work."""
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / ".lock").open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def build(
    version: str = KUBERNETES_VERSION,
    *,
    log: Path | None = None,
    names: tuple[str, ...] = BINARIES,
    local_mains: dict[str, Path] | None = None,
    test: tuple[str, ...] = (),
) -> Path:
    """Build the binaries of `version` that are not cached yet; return their folder.

    `names` are commands of k8s.io/kubernetes (COMPONENTS, NODE_COMPONENTS), `etcd`, or keys
    of `local_mains`: folders holding a `main` package built inside the same module (so
    against the same client-go), whose `go test` runs first for those named in `test`.
    """
    target = bin_dir(version)
    if all((target / name).is_file() for name in names):
        return target
    with exclusive(cache_root() / version):
        return _build(version, target, names, log, local_mains or {}, test)


def _build(
    version: str,
    target: Path,
    names: tuple[str, ...],
    log: Path | None,
    local_mains: dict[str, Path],
    test: tuple[str, ...],
) -> Path:
    missing = [name for name in names if not (target / name).is_file()]
    if not missing:
        return target  # another build made them while this one waited for the lock
    if shutil.which("go") is None:
        raise BuildError("go is not installed (needed to build the control plane)")
    work = cache_root() / version / "src"
    work.mkdir(parents=True, exist_ok=True)
    log = log or cache_root() / version / "build.log"
    env = {**os.environ, "CGO_ENABLED": "0", "GOFLAGS": "-mod=mod"}
    info = json.loads(
        _run(
            "go mod download",
            ["go", "mod", "download", "-json", f"k8s.io/kubernetes@{version}"],
            work,
            log,
            env,
        )
    )
    upstream = json.loads(
        _run("go mod edit", ["go", "mod", "edit", "-json", info["GoMod"]], work, log, env)
    )
    module = parse_go_mod_json(upstream)
    go_directive = str(upstream.get("Go") or "1.26.0")
    (work / "go.mod").write_text(render_go_mod(version, go_directive, module))
    mains = {"etcd": ETCD_MAIN.parent, **local_mains}
    packages = {name: f"k8s.io/kubernetes/cmd/{name}" for name in COMPONENTS + NODE_COMPONENTS}
    for name, folder in mains.items():
        shutil.rmtree(work / name, ignore_errors=True)
        shutil.copytree(folder, work / name)
        packages[name] = f"./{name}"
    unknown = [name for name in missing if name not in packages]
    if unknown:
        raise BuildError(f"no package known for {', '.join(unknown)}")
    etcd = f"{ETCD_SERVER}@{module.requires[ETCD_SERVER]}"
    wanted = [packages[n] for n in missing if not packages[n].startswith("./")]
    _run("go get", ["go", "get", *wanted, etcd], work, log, env)
    for name in test:
        _run(f"go test {name}", ["go", "test", packages[name]], work, log, env)
    target.mkdir(parents=True, exist_ok=True)
    flags = ldflags(version)
    for name in missing:
        partial = target / f".{name}.partial"
        _run(
            f"go build {name}",
            ["go", "build", "-trimpath", "-ldflags", flags, "-o", str(partial), packages[name]],
            work,
            log,
            env,
        )
        partial.rename(target / name)
    return target


def main() -> int:
    """`python -m localcluster.build [VERSION]`: build and print the binaries' folder."""
    version = sys.argv[1] if len(sys.argv) > 1 else KUBERNETES_VERSION
    try:
        print(build(version))
    except (BuildError, ValueError) as error:
        print(f"error: control plane build: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
