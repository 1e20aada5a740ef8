"""Pod volumes as folders on the node: emptyDir, configMap, secret, downwardAPI and
projected (serviceAccountToken through the TokenRequest API, the `kube-root-ca.crt`
ConfigMap, the namespace from the downward API), as the kubelet materialises them.

The service-account token a pod gets this way is a real bound token (audience, expiry, bound
to the pod's name and uid), so in-cluster clients in the pod log in exactly as they would in
a cluster. The node does not refresh tokens (they are valid for an hour, which outlasts every
test); a kubelet would.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from localcluster.podspec import ConfigError, Lookup, Unsupported, field_value

TokenRequest = Callable[[str, str, list[str], int, str, str], str]
"""(namespace, service account, audiences, expirationSeconds, pod name, pod uid) -> token."""


def _write_file(folder: Path, relative: str, data: bytes, mode: int) -> None:
    target = (folder / relative).resolve()
    if folder.resolve() not in target.parents:
        raise ConfigError(f"volume path {relative!r} escapes its volume")
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(data)
    target.chmod(mode)


def _key_files(
    kind: str, source: Mapping[str, Any], namespace: str, lookup: Lookup, default_mode: int
) -> list[tuple[str, bytes, int]]:
    name = str(source.get("name") or source.get("secretName") or "")
    obj = lookup(kind, namespace, name)
    if obj is None:
        if source.get("optional"):
            return []
        noun = "configmap" if kind == "ConfigMap" else "secret"
        raise ConfigError(f'{noun} "{name}" not found')
    raw = dict(obj.get("data") or {})
    data = {k: base64.b64decode(v) if kind == "Secret" else str(v).encode() for k, v in raw.items()}
    items = source.get("items")
    if not items:
        return [(key, value, default_mode) for key, value in data.items()]
    files = []
    for item in items:
        key = str(item["key"])
        if key not in data:
            if source.get("optional"):
                continue
            raise ConfigError(f"configmap references non-existent config key: {key}")
        files.append((str(item.get("path", key)), data[key], int(item.get("mode", default_mode))))
    return files


def _downward_files(
    items: list[Mapping[str, Any]], pod: Mapping[str, Any], default_mode: int
) -> list[tuple[str, bytes, int]]:
    files = []
    for item in items:
        if "fieldRef" not in item:
            raise Unsupported("downwardAPI resourceFieldRef is not supported by the process node")
        value = field_value(pod, str(item["fieldRef"].get("fieldPath", "")))
        files.append((str(item["path"]), value.encode(), int(item.get("mode", default_mode))))
    return files


def materialise(
    volume: Mapping[str, Any],
    folder: Path,
    pod: Mapping[str, Any],
    lookup: Lookup,
    request_token: TokenRequest,
) -> None:
    """Fill `folder` with the content of one pod volume."""
    meta = pod.get("metadata") or {}
    namespace, pod_name, pod_uid = (str(meta.get(k, "")) for k in ("namespace", "name", "uid"))
    folder.mkdir(parents=True, exist_ok=True)
    files: list[tuple[str, bytes, int]] = []
    if "emptyDir" in volume:
        folder.chmod(0o777)
        return
    if "configMap" in volume:
        source = volume["configMap"]
        files = _key_files("ConfigMap", source, namespace, lookup, source.get("defaultMode", 0o644))
    elif "secret" in volume:
        source = volume["secret"]
        files = _key_files("Secret", source, namespace, lookup, source.get("defaultMode", 0o644))
    elif "downwardAPI" in volume:
        source = volume["downwardAPI"]
        files = _downward_files(source.get("items") or [], pod, source.get("defaultMode", 0o644))
    elif "projected" in volume:
        projected = volume["projected"]
        mode = int(projected.get("defaultMode", 0o644))
        account = str((pod.get("spec") or {}).get("serviceAccountName") or "default")
        for source in projected.get("sources") or []:
            if "serviceAccountToken" in source:
                token_spec = source["serviceAccountToken"]
                audience = token_spec.get("audience")
                token = request_token(
                    namespace,
                    account,
                    [str(audience)] if audience else [],
                    int(token_spec.get("expirationSeconds", 3600)),
                    pod_name,
                    pod_uid,
                )
                files.append((str(token_spec["path"]), token.encode(), mode))
            elif "configMap" in source:
                files += _key_files("ConfigMap", source["configMap"], namespace, lookup, mode)
            elif "secret" in source:
                files += _key_files("Secret", source["secret"], namespace, lookup, mode)
            elif "downwardAPI" in source:
                files += _downward_files(source["downwardAPI"].get("items") or [], pod, mode)
            else:
                raise Unsupported(f"projected source {sorted(source)} is not supported")
    else:
        kinds = sorted(k for k in volume if k != "name")
        raise Unsupported(f"volume type {kinds} is not supported by the process node")
    for relative, data, file_mode in files:
        _write_file(folder, relative, data, file_mode)
    folder.chmod(0o755)
