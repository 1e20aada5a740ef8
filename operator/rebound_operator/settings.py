"""Operator settings from flags and REBOUND_* environment variables (pydantic-settings)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from rebound_operator import __version__
from rebound_operator.spec import (
    DEFAULT_PENDING_TIMEOUT,
    MAX_PENDING_TIMEOUT,
    MIN_PENDING_TIMEOUT,
)

PUBLISHED_IMAGES = "ghcr.io/rebound-dev"
"""Where releases publish both images (.github/workflows/release.yaml); manifests/base names
them there."""
DEFAULT_PEER_IMAGE = f"{PUBLISHED_IMAGES}/rebound-peer:{__version__}"
NAMESPACE = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"

Image = Annotated[str, Field(min_length=1, max_length=512)]
METRICS_PATH = "/metrics"


@dataclass(frozen=True)
class ListenAddress:
    """Where the operator serves its liveness probe and /metrics (one port)."""

    host: str
    port: int
    probe_path: str

    @classmethod
    def parse(cls, url: str) -> ListenAddress:
        """From a `--liveness` URL such as `http://0.0.0.0:8080/healthz`; ValueError unless
        it is an http:// URL with a host and a port whose path is not /metrics."""
        parts = urlsplit(url)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError("must be an http:// URL such as http://0.0.0.0:8080/healthz, or ''")
        try:
            port = parts.port
        except ValueError:
            port = None
        if port is None:
            raise ValueError("needs a port, e.g. http://0.0.0.0:8080/healthz")
        path = parts.path or "/"
        if path == METRICS_PATH:
            raise ValueError(f"{METRICS_PATH} is where the metrics are served; use e.g. /healthz")
        return cls(parts.hostname, port, path)


class OperatorSettings(BaseSettings):
    """What the operator watches, what it runs, and how it logs."""

    model_config = SettingsConfigDict(env_prefix="REBOUND_", env_nested_delimiter="__")

    namespaces: list[Annotated[str, Field(max_length=63, pattern=NAMESPACE)]] = Field(
        default_factory=list,
        max_length=256,
        description="namespaces to watch; empty = all (cluster-wide)",
    )
    peer_image: Image = Field(DEFAULT_PEER_IMAGE, description="image for peers without spec.image")
    allowed_images: list[Image] = Field(
        default_factory=list,
        max_length=64,
        description="patterns (shell-style) of spec.image values allowed besides peer_image",
    )
    image_pull_policy: Literal["Always", "IfNotPresent", "Never"] = "IfNotPresent"
    log_format: Literal["plain", "json"] = "plain"
    liveness: str = Field(
        "http://0.0.0.0:8080/healthz",
        max_length=512,
        description="liveness probe URL; /metrics is served on the same port",
    )
    peering: bool = Field(False, description="use kopf peering (for several replicas)")
    priority: int = Field(0, ge=-(2**31), le=2**31 - 1, description="peering priority")
    pending_timeout_seconds: int = Field(
        DEFAULT_PENDING_TIMEOUT,
        ge=MIN_PENDING_TIMEOUT,
        le=MAX_PENDING_TIMEOUT,
        description="how long a session's pods may take to start when its spec's "
        "pendingTimeoutSeconds is 0; also the longest wait for a deleted session's children",
    )
    verbose: bool = False

    @field_validator("liveness")
    @classmethod
    def _liveness_url(cls, value: str) -> str:
        if value:
            ListenAddress.parse(value)
        return value
