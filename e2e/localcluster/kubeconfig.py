"""kubeconfig files for the local cluster's clients (pure rendering + one writer)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from localcluster.layout import CLUSTER_NAME
from localcluster.pki import KeyPair


def render(server: str, ca: Path, client: KeyPair, user: str) -> dict[str, Any]:
    """A kubeconfig with one cluster, one user (client certificate) and one current context."""
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": CLUSTER_NAME,
                "cluster": {"server": server, "certificate-authority": str(ca)},
            }
        ],
        "users": [
            {
                "name": user,
                "user": {"client-certificate": str(client.cert), "client-key": str(client.key)},
            }
        ],
        "contexts": [{"name": CLUSTER_NAME, "context": {"cluster": CLUSTER_NAME, "user": user}}],
        "current-context": CLUSTER_NAME,
        "preferences": {},
    }


def write(path: Path, server: str, ca: Path, client: KeyPair, user: str) -> Path:
    """Write a kubeconfig (private: it names a client key)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(render(server, ca, client, user), sort_keys=False))
    path.chmod(0o600)
    return path
