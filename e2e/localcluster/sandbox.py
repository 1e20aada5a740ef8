"""`python -m localcluster.sandbox SPEC.json`: become one container, then exec its command.

Run as root by the process node, in a new session. In order: enter the pod's network
namespace, take a private mount namespace and a UTS namespace (hostname = pod name), bind
the pod's volume folders at their mount paths, drop to the container's uid/gid/groups (and
set no_new_privs when `allowPrivilegeEscalation: false`), change to its working directory
and exec its argv with exactly its environment. This gives each pod its own address,
hostname, /tmp and service-account files; it is not a container (same root filesystem, no
cgroup limits, no seccomp, no user namespace).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import json
import os
import stat
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

CLONE_NEWNS = 0x00020000
CLONE_NEWUTS = 0x04000000
CLONE_NEWNET = 0x40000000
MS_RDONLY = 0x1
MS_REMOUNT = 0x20
MS_BIND = 0x1000
MS_REC = 0x4000
MS_PRIVATE = 0x40000
PR_SET_NO_NEW_PRIVS = 38
EXIT_SANDBOX_FAILED = 127

_libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)


def _check(result: int, what: str) -> None:
    if result != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"{what}: {os.strerror(errno)}")


def _mount(source: str | None, target: str, flags: int) -> None:
    _check(
        _libc.mount(
            None if source is None else source.encode(), target.encode(), None, flags, None
        ),
        f"mount {source} -> {target}",
    )


def closed_ancestor(path: Path) -> Path | None:
    """The outermost folder on the way to `path` that others may not traverse, if any."""
    current = Path("/")
    for part in path.resolve().parts[1:]:
        current = current / part
        if current == path.resolve():
            break
        if not current.stat().st_mode & stat.S_IXOTH:
            return current
    return None


def reveal_plan(paths: Iterable[Path]) -> dict[str, list[str]]:
    """{closed folder: [paths inside it to keep visible]} for paths a non-root user needs.

    Typically the Python installation behind the project's virtualenv lives under /root
    (mode 0700): the sandbox hides such a folder behind an empty tmpfs and binds back only
    the paths listed here, so the pod sees the interpreter and nothing else of it.
    """
    plan: dict[str, list[str]] = {}
    for path in paths:
        closed = closed_ancestor(path)
        if closed is not None:
            plan.setdefault(str(closed), []).append(str(path.resolve()))
    return plan


def _reveal(plan: dict[str, list[str]]) -> None:
    for closed, keep in plan.items():
        handles = [os.open(path, os.O_PATH | os.O_DIRECTORY) for path in keep]
        _check(
            _libc.mount(b"tmpfs", closed.encode(), b"tmpfs", 0, b"mode=0755,size=1m"),
            f"mount tmpfs on {closed}",
        )
        for path, fd in zip(keep, handles, strict=True):
            Path(path).mkdir(parents=True, exist_ok=True)
            _mount(f"/proc/self/fd/{fd}", path, MS_BIND | MS_REC)
            os.close(fd)


def shadowed_paths(keep: Iterable[str], targets: Iterable[str]) -> list[str]:
    """The paths of `keep` (the repository, the virtualenv, the interpreter) that a volume
    mounted at one of `targets` would hide: a checkout under /tmp must stay visible in a pod
    that mounts an emptyDir at /tmp."""
    mounted = [Path(target) for target in targets]
    return [
        path
        for path in keep
        if any(Path(path) == target or target in Path(path).parents for target in mounted)
    ]


def enter(spec: dict[str, Any]) -> None:
    """Apply the namespaces, mounts and identity of `spec` to this process."""
    netns = spec.get("netns")
    if netns:
        fd = os.open(netns, os.O_RDONLY)
        try:
            _check(_libc.setns(fd, CLONE_NEWNET), f"setns {netns}")
        finally:
            os.close(fd)
    _check(_libc.unshare(CLONE_NEWNS | CLONE_NEWUTS), "unshare")
    _mount(None, "/", MS_REC | MS_PRIVATE)
    _reveal(spec.get("reveal") or {})
    hostname = str(spec.get("hostname", ""))[:63].encode()
    if hostname:
        _check(_libc.sethostname(hostname, len(hostname)), "sethostname")
    mounts = spec.get("mounts", [])
    # Open every source first: a mount on /tmp must not hide a source under /tmp.
    sources = [os.open(source, os.O_PATH) for source, _, _ in mounts]
    shadowed = shadowed_paths(spec.get("keep") or [], [target for _, target, _ in mounts])
    kept = [os.open(path, os.O_PATH | os.O_DIRECTORY) for path in shadowed]
    for fd, (_, target, read_only) in zip(sources, mounts, strict=True):
        Path(target).mkdir(parents=True, exist_ok=True)
        _mount(f"/proc/self/fd/{fd}", target, MS_BIND | MS_REC)
        if read_only:
            _mount(None, target, MS_BIND | MS_REMOUNT | MS_RDONLY)
        os.close(fd)
    for fd, path in zip(kept, shadowed, strict=True):
        Path(path).mkdir(parents=True, exist_ok=True)
        _mount(f"/proc/self/fd/{fd}", path, MS_BIND | MS_REC)
        os.close(fd)
    os.setgroups([int(g) for g in spec.get("groups", [])])
    os.setgid(int(spec["gid"]))
    os.setuid(int(spec["uid"]))
    if spec.get("no_new_privs"):
        _check(_libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "prctl(NO_NEW_PRIVS)")
    os.chdir(spec.get("workdir") or "/")


def main(argv: list[str]) -> int:
    """Read the spec, enter the sandbox, exec. Returns only on failure (exit 127)."""
    if len(argv) != 2:
        print("usage: python -m localcluster.sandbox SPEC.json", file=sys.stderr)
        return 2
    spec = json.loads(Path(argv[1]).read_text())
    try:
        enter(spec)
        os.execvpe(spec["argv"][0], spec["argv"], spec["env"])
    except OSError as exc:
        print(f"process node: cannot start container: {exc}", file=sys.stderr, flush=True)
    return EXIT_SANDBOX_FAILED


if __name__ == "__main__":
    sys.exit(main(sys.argv))
