"""Pure kubelet logic of the process node: what to run for a Pod, and the status to report.

`plan` turns a Pod, its image's configuration and lookups of ConfigMaps/Secrets into a
`ContainerPlan` (argv, environment, user, working directory) following the kubelet's rules:
`command` replaces the image's ENTRYPOINT and `args` its CMD; `$(VAR)` references expand;
`runAsUser`/`runAsGroup` come from the container, then the pod, then the image's USER;
`runAsNonRoot` refuses uid 0. Problems a kubelet reports as `CreateContainerConfigError`
raise `ConfigError` with the kubelet's wording. The status builders produce what a kubelet
writes to `pods/status`.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from localcluster.images import ImageConfig

Lookup = Callable[[str, str, str], Mapping[str, Any] | None]
"""(kind "ConfigMap"|"Secret", namespace, name) -> the object, or None if it does not exist."""

_VAR_REF = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)")


class ConfigError(Exception):
    """A container cannot be created from its spec (CreateContainerConfigError)."""


class Unsupported(Exception):
    """The pod asks for something the process node does not do."""


@dataclass(frozen=True)
class ServiceEndpoint:
    """Where in-cluster clients reach the API server (KUBERNETES_SERVICE_HOST/PORT)."""

    host: str
    port: int


@dataclass
class ContainerPlan:
    """Everything needed to start one container as a local process."""

    name: str
    image: str
    argv: list[str]
    env: dict[str, str]
    workdir: str
    uid: int
    gid: int
    groups: list[int] = field(default_factory=list)
    no_new_privs: bool = False
    mounts: list[tuple[str, str, bool]] = field(default_factory=list)
    """(volume name, mount path, read-only)."""


def now_stamp() -> str:
    """The current time as Kubernetes writes it."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def expand(text: str, env: Mapping[str, str]) -> str:
    """Kubernetes `$(VAR)` expansion: defined variables expand, `$$` is a literal `$`,
    undefined references stay as written."""

    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name = match.group(1)
        return env.get(name, match.group(0))

    return _VAR_REF.sub(replace, text)


def field_value(pod: Mapping[str, Any], path: str) -> str:
    """The value of a downward-API `fieldPath` of `pod`."""
    meta = pod.get("metadata") or {}
    spec = pod.get("spec") or {}
    status = pod.get("status") or {}
    simple = {
        "metadata.name": meta.get("name"),
        "metadata.namespace": meta.get("namespace"),
        "metadata.uid": meta.get("uid"),
        "spec.nodeName": spec.get("nodeName"),
        "spec.serviceAccountName": spec.get("serviceAccountName"),
        "status.podIP": status.get("podIP"),
        "status.hostIP": status.get("hostIP"),
    }
    if path in simple:
        return str(simple[path] or "")
    if path in ("status.podIPs", "status.hostIPs"):
        return ",".join(item.get("ip", "") for item in status.get(path.split(".")[1]) or [])
    match = re.fullmatch(r"metadata\.(labels|annotations)\['([^']+)'\]", path)
    if match:
        return str((meta.get(match.group(1)) or {}).get(match.group(2), ""))
    raise ConfigError(f"unsupported fieldRef fieldPath {path!r}")


def _data(kind: str, obj: Mapping[str, Any]) -> dict[str, str]:
    data = dict(obj.get("data") or {})
    if kind == "Secret":
        return {k: base64.b64decode(v).decode("utf-8", "replace") for k, v in data.items()}
    return {k: str(v) for k, v in data.items()}


def _key_ref(kind: str, ref: Mapping[str, Any], namespace: str, lookup: Lookup) -> str | None:
    name, key = str(ref.get("name", "")), str(ref.get("key", ""))
    optional = bool(ref.get("optional"))
    obj = lookup(kind, namespace, name)
    if obj is None:
        if optional:
            return None
        noun = "configmap" if kind == "ConfigMap" else "secret"
        raise ConfigError(f'{noun} "{name}" not found')
    data = _data(kind, obj)
    if key not in data:
        if optional:
            return None
        raise ConfigError(f"couldn't find key {key} in {kind} {namespace}/{name}")
    return data[key]


def container_env(
    pod: Mapping[str, Any],
    container: Mapping[str, Any],
    image: ImageConfig,
    lookup: Lookup,
    service: ServiceEndpoint,
) -> dict[str, str]:
    """The container's environment: image ENV, envFrom, env (in order, with `$(VAR)`),
    then what every kubelet adds (HOSTNAME, KUBERNETES_SERVICE_HOST/PORT)."""
    namespace = str((pod.get("metadata") or {}).get("namespace", ""))
    env: dict[str, str] = dict(image.env)
    env["HOSTNAME"] = str((pod.get("metadata") or {}).get("name", ""))
    env.setdefault("HOME", "/")
    env["KUBERNETES_SERVICE_HOST"] = service.host
    env["KUBERNETES_SERVICE_PORT"] = str(service.port)
    env["KUBERNETES_SERVICE_PORT_HTTPS"] = str(service.port)
    for source in container.get("envFrom") or []:
        prefix = str(source.get("prefix") or "")
        for kind, key in (("ConfigMap", "configMapRef"), ("Secret", "secretRef")):
            ref = source.get(key)
            if ref is None:
                continue
            obj = lookup(kind, namespace, str(ref.get("name", "")))
            if obj is None:
                if ref.get("optional"):
                    continue
                noun = "configmap" if kind == "ConfigMap" else "secret"
                raise ConfigError(f'{noun} "{ref.get("name")}" not found')
            env.update({prefix + k: v for k, v in _data(kind, obj).items()})
    for item in container.get("env") or []:
        name = str(item["name"])
        if "valueFrom" not in item:
            env[name] = expand(str(item.get("value", "")), env)
            continue
        source = item["valueFrom"] or {}
        value: str | None
        if "fieldRef" in source:
            value = field_value(pod, str(source["fieldRef"].get("fieldPath", "")))
        elif "configMapKeyRef" in source:
            value = _key_ref("ConfigMap", source["configMapKeyRef"], namespace, lookup)
        elif "secretKeyRef" in source:
            value = _key_ref("Secret", source["secretKeyRef"], namespace, lookup)
        else:
            raise ConfigError(f"env {name}: unsupported valueFrom {sorted(source)}")
        if value is not None:
            env[name] = value
    return env


def _numeric_user(user: str) -> tuple[int | None, int | None]:
    if not user:
        return 0, 0
    name, _, group = user.partition(":")
    uid = int(name) if name.isdigit() else None
    gid = int(group) if group.isdigit() else (0 if not group else None)
    return uid, gid


def identity(
    pod: Mapping[str, Any], container: Mapping[str, Any], image: ImageConfig
) -> tuple[int, int, list[int]]:
    """uid, gid and supplementary groups, with the kubelet's runAsNonRoot check."""
    pod_sc = (pod.get("spec") or {}).get("securityContext") or {}
    sc = container.get("securityContext") or {}
    image_uid, image_gid = _numeric_user(image.user)
    uid = sc.get("runAsUser", pod_sc.get("runAsUser", image_uid))
    gid = sc.get("runAsGroup", pod_sc.get("runAsGroup", image_gid))
    non_root = sc.get("runAsNonRoot", pod_sc.get("runAsNonRoot", False))
    if uid is None:
        if non_root:
            raise ConfigError(
                f"container has runAsNonRoot and image has non-numeric user ({image.user}), "
                "cannot verify user is non-root"
            )
        raise Unsupported(f"image user {image.user!r} is a name; the process node needs numbers")
    if non_root and int(uid) == 0:
        raise ConfigError("container has runAsNonRoot and image will run as root")
    groups = [int(g) for g in pod_sc.get("supplementalGroups") or []]
    if pod_sc.get("fsGroup") is not None:
        groups.append(int(pod_sc["fsGroup"]))
    return int(uid), int(gid if gid is not None else 0), groups


def check_supported(pod: Mapping[str, Any]) -> None:
    """Unsupported if the pod needs more than one plain container."""
    spec = pod.get("spec") or {}
    if spec.get("initContainers") or spec.get("ephemeralContainers"):
        raise Unsupported("the process node runs no init or ephemeral containers")
    if len(spec.get("containers") or []) != 1:
        raise Unsupported("the process node runs exactly one container per pod")
    if spec.get("hostNetwork") or spec.get("hostPID") or spec.get("hostIPC"):
        raise Unsupported("host namespaces are not supported by the process node")


def plan(
    pod: Mapping[str, Any], image: ImageConfig, lookup: Lookup, service: ServiceEndpoint
) -> ContainerPlan:
    """What to run for the pod's (single) container."""
    check_supported(pod)
    container = (pod.get("spec") or {})["containers"][0]
    env = container_env(pod, container, image, lookup, service)
    if container.get("command"):
        argv = list(container["command"]) + list(container.get("args") or [])
    elif container.get("args"):
        argv = list(image.entrypoint) + list(container["args"])
    else:
        argv = list(image.entrypoint) + list(image.cmd)
    if not argv:
        raise ConfigError("no command specified")
    argv = [expand(str(part), env) for part in argv]
    uid, gid, groups = identity(pod, container, image)
    sc = container.get("securityContext") or {}
    return ContainerPlan(
        name=str(container["name"]),
        image=str(container.get("image", "")),
        argv=argv,
        env=env,
        workdir=str(container.get("workingDir") or image.workdir or "/"),
        uid=uid,
        gid=gid,
        groups=groups,
        no_new_privs=sc.get("allowPrivilegeEscalation") is False,
        mounts=[
            (str(m["name"]), str(m["mountPath"]), bool(m.get("readOnly")))
            for m in container.get("volumeMounts") or []
        ],
    )


# ---- status -------------------------------------------------------------------------------


def waiting(reason: str, message: str = "") -> dict[str, Any]:
    """A container state: waiting."""
    state: dict[str, Any] = {"reason": reason}
    if message:
        state["message"] = message
    return {"waiting": state}


def running(started_at: str) -> dict[str, Any]:
    """A container state: running since `started_at`."""
    return {"running": {"startedAt": started_at}}


def terminated(
    exit_code: int, started_at: str, finished_at: str, reason: str | None = None, message: str = ""
) -> dict[str, Any]:
    """A container state: terminated (reason Completed for 0, Error otherwise, by default)."""
    state: dict[str, Any] = {
        "exitCode": exit_code,
        "reason": reason or ("Completed" if exit_code == 0 else "Error"),
        "startedAt": started_at,
        "finishedAt": finished_at,
    }
    if exit_code >= 128:
        state["signal"] = exit_code - 128
    if message:
        state["message"] = message
    return {"terminated": state}


def exit_code_of(returncode: int) -> int:
    """A process's return code as a container exit code (signal N -> 128+N)."""
    return 128 - returncode if returncode < 0 else returncode


def _condition(kind: str, value: bool, now: str, reason: str = "") -> dict[str, Any]:
    condition: dict[str, Any] = {
        "type": kind,
        "status": "True" if value else "False",
        "lastTransitionTime": now,
        "lastProbeTime": None,
    }
    if reason:
        condition["reason"] = reason
    return condition


@dataclass(frozen=True)
class ContainerView:
    """One container's state as the node last saw it."""

    name: str
    image: str
    state: dict[str, Any]
    restart_count: int = 0
    last_state: dict[str, Any] = field(default_factory=dict)
    container_id: str = ""


def pod_status(
    phase: str,
    container: ContainerView,
    *,
    host_ip: str,
    pod_ip: str | None,
    start_time: str,
    sandbox_ready: bool,
    reason: str | None = None,
    message: str | None = None,
) -> dict[str, Any]:
    """A full `status` as a kubelet writes it for a one-container pod."""
    now = now_stamp()
    is_running = "running" in container.state
    done = phase in ("Succeeded", "Failed")
    not_ready_reason = "PodCompleted" if done else "ContainersNotReady"
    status: dict[str, Any] = {
        "phase": phase,
        "hostIP": host_ip,
        "hostIPs": [{"ip": host_ip}],
        "startTime": start_time,
        "conditions": [
            _condition("PodReadyToStartContainers", sandbox_ready and not done, now),
            _condition("Initialized", True, now),
            _condition("Ready", is_running, now, "" if is_running else not_ready_reason),
            _condition("ContainersReady", is_running, now, "" if is_running else not_ready_reason),
            _condition("PodScheduled", True, now),
        ],
        "containerStatuses": [
            {
                "name": container.name,
                "image": container.image,
                "imageID": container.image,
                "containerID": container.container_id or None,
                "ready": is_running,
                "started": is_running,
                "restartCount": container.restart_count,
                "state": container.state,
                "lastState": container.last_state,
            }
        ],
        "reason": reason,
        "message": message,
    }
    if pod_ip:
        status["podIP"] = pod_ip
        status["podIPs"] = [{"ip": pod_ip}]
    return status
