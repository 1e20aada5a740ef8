"""The BallSession spec as a typed model: the peers' SessionSpec plus operator-only fields."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic.alias_generators import to_camel

from peers.config import IceServer, SessionSpec

Quantity = int | str


def _default_requests() -> dict[str, Quantity]:
    return {"cpu": "500m", "memory": "256Mi"}


def _default_limits() -> dict[str, Quantity]:
    return {"cpu": "2", "memory": "1Gi"}


class Resources(BaseModel):
    """Requests and limits of each peer container (Kubernetes quantities)."""

    model_config = ConfigDict(extra="forbid")

    requests: dict[str, Quantity] = Field(default_factory=_default_requests)
    limits: dict[str, Quantity] = Field(default_factory=_default_limits)


class BallSessionSpec(SessionSpec):
    """Everything a BallSession's spec may say; defaults equal the CRD's."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")

    max_mean_error_px: float = Field(1.0, ge=0.0, le=10_000.0)
    signaling_timeout_seconds: int = Field(120, ge=5, le=3600)
    active_deadline_seconds: int = Field(3600, ge=0, le=604_800)
    image: str = Field("", max_length=512)
    resources: Resources = Field(default_factory=Resources)
    ice_servers: list[IceServer] = Field(default_factory=list, max_length=8)

    def session(self) -> SessionSpec:
        """Just the part the server peer needs."""
        return SessionSpec.model_validate(self.model_dump(include=set(SessionSpec.model_fields)))


class InvalidSpec(ValueError):
    """The spec cannot be run; the message is one line for the status condition."""


def parse_spec(raw: dict[str, Any]) -> BallSessionSpec:
    """Validate a BallSession's spec; InvalidSpec with a readable one-line message if bad."""
    try:
        return BallSessionSpec.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        message = str(first["msg"]).removeprefix("Value error, ")
        raise InvalidSpec(f"spec.{where}: {message}" if where else f"spec: {message}") from None
