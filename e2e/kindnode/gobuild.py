"""The Go binaries a kind cluster needs, built from the Go module proxy and cached by version.

Kubernetes' own (kubeadm, kubelet, kube-proxy, kubectl and the control-plane components in
the images) come from `localcluster.build`'s module: one version, one set of ldflags, one
cache (`~/.cache/rebound/cluster/<version>/bin`). The others are `go install`ed at a pinned
version into `~/.cache/rebound/kind/<name>/<version>/`: the kind CLI, crictl, CoreDNS and
kube-network-policies. A second run only checks the files exist.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from localcluster import build as k8s

KIND_VERSION = "v0.33.0"
CRICTL_VERSION = "v1.37.0"
NETWORK_POLICIES_VERSION = "v0.8.0"
CNI_DAEMON_MAIN = Path(__file__).with_name("gomod") / "rebound-cni"
Say = Callable[[str], None]


@dataclass(frozen=True)
class GoTool:
    """A command `go install`ed from the module proxy at a pinned version."""

    name: str
    package: str
    version: str

    def binary(self) -> Path:
        """Where the built binary is cached."""
        return cache_root() / self.name / self.version / self.name

    def install_argv(self) -> list[str]:
        """The `go install` command line (static, stripped, reproducible paths)."""
        return ["go", "install", "-trimpath", "-ldflags=-s -w", f"{self.package}@{self.version}"]

    def installed_name(self) -> str:
        """The file name `go install` gives the binary: the package path's last element."""
        return self.package.rsplit("/", 1)[-1]


def cache_root() -> Path:
    """$REBOUND_KIND_CACHE, else ~/.cache/rebound/kind."""
    configured = os.environ.get("REBOUND_KIND_CACHE")
    return Path(configured) if configured else Path.home() / ".cache" / "rebound" / "kind"


def kind_tool() -> GoTool:
    """The kind CLI."""
    return GoTool("kind", "sigs.k8s.io/kind", KIND_VERSION)


def crictl_tool() -> GoTool:
    """crictl (kind's `export logs` and the e2e stories call it in the nodes)."""
    return GoTool("crictl", "sigs.k8s.io/cri-tools/cmd/crictl", CRICTL_VERSION)


COREDNS_MODULE = "github.com/coredns/coredns"
COREDNS_MAIN = Path(__file__).with_name("gomod") / "coredns"


NETWORK_POLICIES_MODULE = "sigs.k8s.io/kube-network-policies"
NETWORK_POLICIES_PATCH = Path(__file__).with_name("gomod") / "kube-network-policies" / "xtqueue.go"
# The statement kube-network-policies queues packets with, twice in controller.go; replaced by
# a call to nfqueueTarget (xtqueue.go), which the kernel runs through nft_compat.
NFT_QUEUE_STATEMENT = """\
	queue := &expr.Queue{Num: uint16(c.config.QueueID)}
	if c.config.FailOpen {
		queue.Flag = expr.QueueFlagBypass
	}
"""
XT_QUEUE_STATEMENT = """\
	queue := nfqueueTarget(uint16(c.config.QueueID), c.config.FailOpen)
"""


class GoBuildError(RuntimeError):
    """A build failed; the message names it and its log."""


def install(tool: GoTool, log: Path, say: Say) -> Path:
    """The cached binary of `tool`, built first if it is missing."""
    binary = tool.binary()
    if binary.is_file():
        return binary
    if shutil.which("go") is None:
        raise GoBuildError(f"go is not installed (needed to build {tool.name})")
    say(f"building {tool.name} {tool.version} ...")
    folder = binary.parent
    staging = folder / ".gobin"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    env = {**os.environ, "CGO_ENABLED": "0", "GOBIN": str(staging), "GOFLAGS": "-buildvcs=false"}
    run_go(tool.install_argv(), folder, env, log, f"{tool.name} {tool.version}")
    (staging / tool.installed_name()).rename(binary)
    shutil.rmtree(staging)
    return binary


def run_go(argv: list[str], cwd: Path, env: dict[str, str], log: Path, what: str) -> None:
    """Run a `go` command at low priority, its output appended to `log`; GoBuildError naming
    `what` if it fails."""
    with log.open("a") as sink:
        sink.write(f"$ {' '.join(argv)}\n")
        sink.flush()
        result = subprocess.run(
            ["nice", "-n", "15", *argv], cwd=cwd, env=env, stdout=sink, stderr=subprocess.STDOUT
        )
    if result.returncode != 0:
        raise GoBuildError(f"building {what} failed; see {log}")


def go_build(binary: Path, package: str, work: Path, log: Path, what: str) -> None:
    """`go build` of `package` in the module at `work` into `binary`, static and stripped."""
    env = {**os.environ, "CGO_ENABLED": "0", "GOFLAGS": "-buildvcs=false -mod=mod"}
    argv = ["go", "build", "-trimpath", "-ldflags=-s -w", "-o", str(binary), package]
    run_go(argv, work, env, log, what)


def cni_daemon_tag() -> str:
    """A hash of the pod-network daemon's source: its binary's and image's tag, so an edit
    rebuilds both."""
    digest = hashlib.sha256()
    for path in sorted(CNI_DAEMON_MAIN.glob("*.go")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:12]


def cni_daemon_name() -> str:
    """The pod-network daemon's binary name in the Kubernetes build's folder."""
    return f"rebound-cni-{cni_daemon_tag()}"


def patch_queue_statements(controller_go: str) -> str:
    """controller.go with both nft `queue` statements replaced by nfqueueTarget calls
    (GoBuildError when the source does not hold exactly two: another version)."""
    found = controller_go.count(NFT_QUEUE_STATEMENT)
    if found != 2:
        raise GoBuildError(
            f"kube-network-policies {NETWORK_POLICIES_VERSION}: expected 2 nft queue statements "
            f"in controller.go, found {found}"
        )
    return controller_go.replace(NFT_QUEUE_STATEMENT, XT_QUEUE_STATEMENT)


def network_policies_binary(log: Path, say: Say) -> Path:
    """kube-network-policies, the NetworkPolicy engine kindnetd embeds, from its module
    source with one change (xtqueue.go: NFQUEUE through nft_compat); cached by version and
    a hash of the change."""
    change = hashlib.sha256(NETWORK_POLICIES_PATCH.read_bytes()).hexdigest()[:8]
    folder = cache_root() / "netpol" / f"{NETWORK_POLICIES_VERSION}-xtqueue-{change}"
    binary = folder / "netpol"
    if binary.is_file():
        return binary
    if shutil.which("go") is None:
        raise GoBuildError("go is not installed (needed to build kube-network-policies)")
    say(f"building kube-network-policies {NETWORK_POLICIES_VERSION} (NFQUEUE via nft_compat) ...")
    source = module_dir(NETWORK_POLICIES_MODULE, NETWORK_POLICIES_VERSION, log)
    work = folder / "src"
    shutil.rmtree(work, ignore_errors=True)
    shutil.copytree(source, work)
    for path in [work, *work.rglob("*")]:
        path.chmod(path.stat().st_mode | 0o200)
    package = work / "pkg" / "networkpolicy"
    controller = package / "controller.go"
    controller.write_text(patch_queue_statements(controller.read_text()))
    shutil.copy(NETWORK_POLICIES_PATCH, package / "xtqueue.go")
    go_build(binary, "./cmd", work, log, "kube-network-policies")
    shutil.rmtree(work)
    return binary


def coredns_binary(version: str, log: Path, say: Say) -> Path:
    """CoreDNS at the version kubeadm asks for (its image tag), with kubeadm's plugins only
    (gomod/coredns/main.go); cached by version and a hash of that main."""
    change = hashlib.sha256((COREDNS_MAIN / "main.go").read_bytes()).hexdigest()[:8]
    folder = cache_root() / "coredns" / f"{version}-{change}"
    binary = folder / "coredns"
    if binary.is_file():
        return binary
    if shutil.which("go") is None:
        raise GoBuildError("go is not installed (needed to build CoreDNS)")
    say(f"building CoreDNS {version} (kubeadm's plugins) ...")
    work = folder / "src"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    shutil.copy(COREDNS_MAIN / "main.go", work / "main.go")
    # CoreDNS's own go directive, so that the module graph is pruned as in its repository
    # (without one, Go 1.16 semantics fetch every test dependency of every module).
    upstream = module_dir(COREDNS_MODULE, version, log) / "go.mod"
    go_line = next(
        (line for line in upstream.read_text().splitlines() if line.startswith("go ")), "go 1.25"
    )
    (work / "go.mod").write_text(
        f"module rebound.dev/coredns\n\n{go_line}\n\nrequire {COREDNS_MODULE} {version}\n"
    )
    go_build(binary, ".", work, log, f"CoreDNS {version}")
    shutil.rmtree(work)
    return binary


def kubernetes_binaries(log: Path, say: Say) -> Path:
    """kubeadm, kubelet, kube-proxy, the control plane, kubectl and the pod-network daemon
    (tested first), built by the control plane's build module; their folder."""
    folder = k8s.bin_dir()
    daemon = cni_daemon_name()
    names = (*k8s.BINARIES, *k8s.NODE_COMPONENTS, daemon)
    missing = [name for name in names if not (folder / name).is_file()]
    if missing:
        say(f"building {', '.join(missing)} (Kubernetes {k8s.KUBERNETES_VERSION}) ...")
    try:
        return k8s.build(
            names=names,
            log=log,
            local_mains={daemon: CNI_DAEMON_MAIN},
            test=(daemon,) if daemon in missing else (),
        )
    except k8s.BuildError as error:
        raise GoBuildError(str(error)) from None


def module_dir(module: str, version: str, log: Path) -> Path:
    """A module's source folder, downloaded through the module proxy if needed."""
    cache_root().mkdir(parents=True, exist_ok=True)
    result = subprocess.run(
        ["go", "mod", "download", "-json", f"{module}@{version}"],
        capture_output=True,
        text=True,
        cwd=cache_root(),
    )
    if result.returncode != 0:
        with log.open("a") as sink:
            sink.write(result.stdout + result.stderr)
        raise GoBuildError(f"go mod download {module}@{version} failed; see {log}")
    return Path(json.loads(result.stdout)["Dir"])


def pause_binary(tag: str, log: Path, say: Say) -> Path:
    """The pause container's binary at `tag`: `build/pause/linux/pause.c` of k8s.io/kubernetes,
    compiled static as upstream's Makefile does."""
    binary = cache_root() / "pause" / tag / "pause"
    if binary.is_file():
        return binary
    if shutil.which("gcc") is None:
        raise GoBuildError("gcc is not installed (apt-get install gcc libc6-dev)")
    say(f"compiling pause {tag} ...")
    source = (
        module_dir("k8s.io/kubernetes", k8s.KUBERNETES_VERSION, log) / "build" / "pause" / "linux"
    )
    binary.parent.mkdir(parents=True, exist_ok=True)
    partial = binary.with_suffix(".partial")
    argv = ["gcc", "-Os", "-Wall", "-Werror", "-static", f"-DVERSION=v{tag}", "-o", str(partial)]
    with log.open("a") as sink:
        result = subprocess.run(
            [*argv, str(source / "pause.c")], stdout=sink, stderr=subprocess.STDOUT
        )
    if result.returncode != 0:
        raise GoBuildError(f"compiling pause failed; see {log}")
    partial.rename(binary)
    return binary
