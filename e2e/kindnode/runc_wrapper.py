"""An OCI runtime in front of runc that removes capabilities the host cannot grant.

`docker run --privileged` (kind's node containers) asks runc for every capability; where the
host's capability bounding set lacks one (CAP_SYS_RESOURCE on some sandboxes), runc fails
with "unable to apply caps: operation not permitted", and docker 20.10 ignores `--cap-drop`
next to `--privileged`. This wrapper is registered as dockerd's default runtime (only where
the bounding set lacks something): it removes the capabilities the bounding set lacks from
the bundle's `config.json` on `create`/`run` and from the `--process` file on `exec` (which
kind uses constantly), then execs the real runc with the same arguments.

Standard library only: it is installed as a script (`engine.install_wrapper`) and runs for
every runc call dockerd makes.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterable, Sequence
from typing import Any

REAL_RUNC = "/usr/sbin/runc"
CAP_SETS = ("bounding", "effective", "inheritable", "permitted", "ambient")
# Linux capability numbers (linux/capability.h), for reading a bounding-set bitmask.
CAPABILITIES = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
]
# runc's global flags that take a value (`runc --root X create ...`).
GLOBAL_FLAGS_WITH_VALUE = frozenset({"--root", "--log", "--log-format", "--criu", "--rootless"})


def bounding_set_lacks(status_text: str) -> list[str]:
    """The known capabilities missing from `CapBnd` in a /proc/<pid>/status text."""
    for line in status_text.splitlines():
        if line.startswith("CapBnd:"):
            mask = int(line.split()[1], 16)
            return [name for bit, name in enumerate(CAPABILITIES) if not mask >> bit & 1]
    raise ValueError("no CapBnd line in the status text")


def strip_capabilities(capabilities: dict[str, Any], drop: Iterable[str]) -> bool:
    """Remove `drop` from every set of an OCI `capabilities` object; True if anything changed."""
    unwanted = set(drop)
    changed = False
    for name in CAP_SETS:
        granted = capabilities.get(name)
        if isinstance(granted, list) and unwanted.intersection(granted):
            capabilities[name] = [cap for cap in granted if cap not in unwanted]
            changed = True
    return changed


def command_of(argv: Sequence[str]) -> tuple[str, list[str]]:
    """runc's subcommand and the arguments after it (global flags skipped)."""
    index = 0
    while index < len(argv):
        arg = argv[index]
        if not arg.startswith("-"):
            return arg, list(argv[index + 1 :])
        index += 2 if arg in GLOBAL_FLAGS_WITH_VALUE else 1
    return "", []


def flag_value(args: Sequence[str], *names: str) -> str | None:
    """The value of the first of `names` in `args` (`--bundle X` or `--bundle=X`)."""
    for index, arg in enumerate(args):
        for name in names:
            if arg == name and index + 1 < len(args):
                return args[index + 1]
            if arg.startswith(name + "="):
                return arg[len(name) + 1 :]
    return None


def file_to_edit(argv: Sequence[str], cwd: str) -> tuple[str, str] | None:
    """(path, kind) of the JSON this call's capabilities live in: the bundle's config.json
    for create/run ("spec"), the --process file for exec ("process"); None otherwise."""
    command, args = command_of(argv)
    if command in ("create", "run"):
        bundle = flag_value(args, "--bundle", "-b") or cwd
        return os.path.join(bundle, "config.json"), "spec"
    if command == "exec":
        process = flag_value(args, "--process", "-p")
        return (process, "process") if process else None
    return None


def edit_document(document: dict[str, Any], kind: str, drop: Iterable[str]) -> bool:
    """Strip `drop` from a spec's `process.capabilities` or a process file's
    `capabilities`; True if the document changed."""
    process = document.get("process") if kind == "spec" else document
    if not isinstance(process, dict):
        return False
    capabilities = process.get("capabilities")
    return isinstance(capabilities, dict) and strip_capabilities(capabilities, drop)


def rewrite(path: str, kind: str, drop: Iterable[str]) -> None:
    """Edit the JSON file at `path` in place when it grants any of `drop`."""
    with open(path) as source:
        document = json.load(source)
    if edit_document(document, kind, drop):
        with open(path, "w") as sink:
            json.dump(document, sink)


def main(argv: Sequence[str]) -> None:
    """Strip what the bounding set lacks from this call's JSON, then become the real runc."""
    real = os.environ.get("REBOUND_REAL_RUNC", REAL_RUNC)
    with open("/proc/self/status") as status:
        drop = bounding_set_lacks(status.read())
    target = file_to_edit(argv, os.getcwd())
    if drop and target is not None:
        try:
            rewrite(*target, drop)
        except (OSError, ValueError) as error:
            print(f"rebound runc wrapper: cannot edit {target[0]}: {error}", file=sys.stderr)
    os.execv(real, [real, *argv])


if __name__ == "__main__":
    main(sys.argv[1:])
