"""Operator settings from flags and REBOUND_* environment variables (pydantic-settings)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_PEER_IMAGE = "rebound-peer:0.1.0"
MIN_PENDING_TIMEOUT = 10
MAX_PENDING_TIMEOUT = 86_400
NAMESPACE = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"

Image = Annotated[str, Field(min_length=1, max_length=512)]


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
        "http://0.0.0.0:8080/healthz", max_length=512, description="kopf liveness endpoint"
    )
    peering: bool = Field(False, description="use kopf peering (for several replicas)")
    priority: int = Field(0, ge=-(2**31), le=2**31 - 1, description="peering priority")
    pending_timeout_seconds: int = Field(
        300,
        ge=MIN_PENDING_TIMEOUT,
        le=MAX_PENDING_TIMEOUT,
        description="fail a session whose pod is not running after this long",
    )
    verbose: bool = False

    @field_validator("liveness")
    @classmethod
    def _liveness_url(cls, value: str) -> str:
        if value and not value.startswith(("http://", "https://")):
            raise ValueError("must be an http:// URL such as http://0.0.0.0:8080/healthz, or ''")
        return value
