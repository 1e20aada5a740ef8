"""What the process node runs for an image: the final stage of the project's Dockerfiles.

No image is pulled. An image reference whose repository's last path component names one of
the project's images (`rebound-peer`, `rebound-operator`, under any registry and tag) runs
that Dockerfile's ENTRYPOINT/CMD/USER/WORKDIR/ENV, with the image's virtualenv
(`/opt/rebound`) replaced by the project's `.venv`. Any other image fails to "pull"
(ErrImagePull), as it would on a node without access to it.
"""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

from localcluster.layout import REPO

IMAGE_VENV = "/opt/rebound"
DOCKERFILES = {
    "rebound-peer": REPO / "Dockerfile.peer",
    "rebound-operator": REPO / "Dockerfile.operator",
}
_ARG_REF = re.compile(r"\$\{?(\w+)\}?")


@dataclass(frozen=True)
class ImageConfig:
    """The runtime configuration an image carries (as `docker inspect` would show it)."""

    entrypoint: list[str] = field(default_factory=list)
    cmd: list[str] = field(default_factory=list)
    user: str = ""
    workdir: str = "/"
    env: dict[str, str] = field(default_factory=dict)


def _instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    result: list[tuple[str, str]] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line = pending + line
        pending = ""
        word, _, rest = line.partition(" ")
        result.append((word.upper(), rest.strip()))
    return result


def _exec_form(value: str) -> list[str]:
    value = value.strip()
    if value.startswith("["):
        parsed = json.loads(value)
        return [str(part) for part in parsed]
    return ["/bin/sh", "-c", value]


def _env_pairs(value: str, known: dict[str, str]) -> dict[str, str]:
    def expand(text: str) -> str:
        return _ARG_REF.sub(lambda m: known.get(m.group(1), ""), text)

    pairs: dict[str, str] = {}
    if "=" not in value.split(" ", 1)[0]:
        key, _, rest = value.partition(" ")
        pairs[key] = expand(rest.strip())
        return pairs
    for token in shlex.split(value):
        key, _, raw = token.partition("=")
        pairs[key] = expand(raw)
        known = {**known, key: pairs[key]}
    return pairs


def parse_dockerfile(text: str, base_env: dict[str, str] | None = None) -> ImageConfig:
    """The final stage's runtime configuration (instructions after the last FROM)."""
    stages: list[list[tuple[str, str]]] = []
    for instruction in _instructions(text):
        if instruction[0] == "FROM":
            stages.append([])
        elif stages:
            stages[-1].append(instruction)
    if not stages:
        raise ValueError("no FROM instruction")
    env = dict(base_env or {})
    config: dict[str, object] = {"entrypoint": [], "cmd": [], "user": "", "workdir": "/"}
    for word, value in stages[-1]:
        if word == "ENV":
            env.update(_env_pairs(value, env))
        elif word == "ENTRYPOINT":
            config["entrypoint"] = _exec_form(value)
            config["cmd"] = []  # as Docker: a later ENTRYPOINT resets an inherited CMD
        elif word == "CMD":
            config["cmd"] = _exec_form(value)
        elif word == "USER":
            config["user"] = value
        elif word == "WORKDIR":
            config["workdir"] = value
    return ImageConfig(env=env, **config)  # type: ignore[arg-type]


def repository_name(image: str) -> str:
    """`ghcr.io/x/rebound-peer:0.1.0@sha256:...` -> `rebound-peer`."""
    without_digest = image.split("@", 1)[0]
    last = without_digest.rsplit("/", 1)[-1]
    return last.split(":", 1)[0]


class ImageCatalog:
    """Resolves image references to runtime configurations, with the venv substituted."""

    def __init__(self, venv: Path, dockerfiles: dict[str, Path] | None = None) -> None:
        self.venv = venv
        self.dockerfiles = dict(DOCKERFILES if dockerfiles is None else dockerfiles)
        self._cache: dict[str, ImageConfig] = {}

    def resolve(self, image: str) -> ImageConfig | None:
        """The configuration of `image`, or None if this node cannot "pull" it."""
        name = repository_name(image)
        path = self.dockerfiles.get(name)
        if path is None:
            return None
        if name not in self._cache:
            base = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}
            parsed = parse_dockerfile(path.read_text(), base)
            env = {k: v.replace(IMAGE_VENV, str(self.venv)) for k, v in parsed.env.items()}
            self._cache[name] = ImageConfig(
                entrypoint=parsed.entrypoint,
                cmd=parsed.cmd,
                user=parsed.user,
                workdir=parsed.workdir,
                env=env,
            )
        return self._cache[name]
