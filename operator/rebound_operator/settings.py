"""Operator settings from flags and REBOUND_* environment variables (pydantic-settings)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_PEER_IMAGE = "rebound-peer:0.1.0"


class OperatorSettings(BaseSettings):
    """What the operator watches, what it runs, and how it logs."""

    model_config = SettingsConfigDict(env_prefix="REBOUND_", env_nested_delimiter="__")

    namespaces: list[str] = Field(
        default_factory=list, description="namespaces to watch; empty = all (cluster-wide)"
    )
    peer_image: str = Field(DEFAULT_PEER_IMAGE, description="image for peers without spec.image")
    image_pull_policy: Literal["Always", "IfNotPresent", "Never"] = "IfNotPresent"
    log_format: Literal["plain", "json"] = "plain"
    liveness: str = Field(
        "http://0.0.0.0:8080/healthz", description="kopf liveness endpoint; empty = none"
    )
    peering: bool = Field(False, description="use kopf peering (for several replicas)")
    priority: int = Field(0, description="peering priority; replicas must differ")
    pending_timeout_seconds: int = Field(
        300, ge=10, description="fail a session whose pod is not running after this long"
    )
    verbose: bool = False
