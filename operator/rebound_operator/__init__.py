"""Rebound's Kubernetes operator: runs BallSession custom resources with kopf.

`operator/` is a source root, not a package: the import name is `rebound_operator`, so the
standard library's `operator` is never shadowed.
"""

GROUP = "rebound.dev"
VERSION = "v1alpha1"
PLURAL = "ballsessions"
KIND = "BallSession"
API_VERSION = f"{GROUP}/{VERSION}"
__version__ = "0.1.0"
