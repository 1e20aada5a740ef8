"""The BallSession spec as a typed model: the peers' SessionSpec plus operator-only fields."""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel

from peers.config import SessionSpec

Quantity = int | str

DNS_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
"""A Kubernetes object name such as a Secret's (RFC 1123 subdomain)."""
SECRET_KEY = r"^[-._a-zA-Z0-9]+$"
"""A key of a Secret's data."""
ICE_URL = r"^(stun|stuns|turn|turns):"
MIN_PENDING_TIMEOUT = 10
MAX_PENDING_TIMEOUT = 86_400
DEFAULT_PENDING_TIMEOUT = 300
"""The operator's --pending-timeout unless told otherwise."""
PENDING_TIMEOUT_RULE = (
    "pendingTimeoutSeconds must be 0 (the operator's --pending-timeout) or at least 10"
)
"""The CRD's rule for the field, word for word."""
LABEL_KEY = (
    r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
    r"[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$"
)
"""A label key: an optional DNS-subdomain prefix and `/`, then a name of at most 63."""
LABEL_VALUE = r"^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?$"
DEFAULT_MAX_MEAN_ERROR_PX = 1.0
"""The mean-error gate of a session that names none (spec.expect or the deprecated field)."""
MAX_SCHEDULING_JSON = 16_384
"""Characters of one peer's `affinity` as JSON (the CRD bounds every list inside it)."""

Placement = Literal["Any", "SameNode", "SeparateNodes"]


def _default_requests() -> dict[str, Quantity]:
    return {"cpu": "500m", "memory": "256Mi"}


def _default_limits() -> dict[str, Quantity]:
    return {"cpu": "2", "memory": "1Gi"}


class Resources(BaseModel):
    """Requests and limits of each peer container (Kubernetes quantities)."""

    model_config = ConfigDict(extra="forbid")

    requests: dict[str, Quantity] = Field(default_factory=_default_requests)
    limits: dict[str, Quantity] = Field(default_factory=_default_limits)


class PeerResources(BaseModel):
    """One peer's own requests and/or limits; what it leaves out comes from `spec.resources`."""

    model_config = ConfigDict(extra="forbid")

    requests: dict[str, Quantity] | None = Field(None, max_length=8)
    limits: dict[str, Quantity] | None = Field(None, max_length=8)


class Toleration(BaseModel):
    """A pod toleration (core/v1 Toleration)."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")

    key: str | None = Field(None, max_length=317, pattern=LABEL_KEY)
    operator: Literal["Exists", "Equal"] | None = None
    value: str | None = Field(None, max_length=63, pattern=LABEL_VALUE)
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = None
    toleration_seconds: int | None = Field(None, ge=0, le=2**31 - 1)

    @model_validator(mode="after")
    def _exists_has_no_value(self) -> Toleration:
        if self.operator == "Exists" and self.value:
            raise ValueError("operator Exists takes no value")
        if self.key is None and self.operator != "Exists":
            raise ValueError("a toleration without a key must use operator Exists")
        return self


class PeerSpec(BaseModel):
    """Where one peer runs (`spec.server`, `spec.client`): scheduling only, never a node name."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")

    node_selector: (
        dict[
            Annotated[str, Field(max_length=317, pattern=LABEL_KEY)],
            Annotated[str, Field(max_length=63, pattern=LABEL_VALUE)],
        ]
        | None
    ) = Field(None, max_length=32)
    affinity: dict[str, Any] | None = None
    """core/v1 Affinity; its structure is checked by the CRD schema (and again by the API
    server when the pod is created)."""
    tolerations: list[Toleration] | None = Field(None, max_length=32)
    priority_class_name: str | None = Field(
        None, min_length=1, max_length=253, pattern=DNS_SUBDOMAIN
    )
    resources: PeerResources | None = None

    @model_validator(mode="after")
    def _affinity_bounded(self) -> PeerSpec:
        if self.affinity is not None and len(json.dumps(self.affinity)) > MAX_SCHEDULING_JSON:
            raise ValueError(f"affinity is larger than {MAX_SCHEDULING_JSON} characters of JSON")
        return self


class Expectations(BaseModel):
    """`spec.expect`: the gates a completed session must pass to Succeed (each optional)."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")

    max_mean_error_px: float | None = Field(None, ge=0.0, le=10_000.0)
    max_p95_error_px: float | None = Field(None, ge=0.0, le=10_000.0)
    min_matched_ratio: float | None = Field(None, ge=0.0, le=1.0)
    min_fps: float | None = Field(None, ge=0.0, le=120.0)
    max_latency_ms_p95: float | None = Field(None, ge=0.0, le=60_000.0)

    @property
    def given(self) -> bool:
        """True if any gate is set here."""
        return any(value is not None for value in self.model_dump().values())


class SecretKeyRef(BaseModel):
    """One key of a Secret in the session's namespace."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=253, pattern=DNS_SUBDOMAIN)
    key: str = Field(min_length=1, max_length=253, pattern=SECRET_KEY)


class SessionIceServer(BaseModel):
    """A STUN/TURN server as a BallSession names it: the credential stays in a Secret.

    The pods get `--ice-servers` without any credential and the credential of server `i`
    as the env var `REBOUND_ICE_CREDENTIAL_<i>` from `credentialSecretRef` (docs/CONTRACTS.md).
    """

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")

    urls: list[Annotated[str, Field(min_length=1, max_length=512, pattern=ICE_URL)]] = Field(
        min_length=1, max_length=8
    )
    username: str | None = Field(None, max_length=256)
    credential_secret_ref: SecretKeyRef | None = None

    @model_validator(mode="after")
    def _credentials_complete(self) -> SessionIceServer:
        if (self.username is None) != (self.credential_secret_ref is None):
            raise ValueError("username and credentialSecretRef go together")
        turn = any(url.startswith(("turn:", "turns:")) for url in self.urls)
        if turn and self.credential_secret_ref is None:
            raise ValueError("turn: and turns: URLs need a username and credentialSecretRef")
        return self

    def peer_view(self) -> dict[str, Any]:
        """What the peers' `--ice-servers` JSON holds for this server: never a credential."""
        view: dict[str, Any] = {"urls": list(self.urls)}
        if self.username is not None:
            view["username"] = self.username
        return view


class BallSessionSpec(SessionSpec):
    """Everything a BallSession's spec may say; defaults equal the CRD's."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")

    max_mean_error_px: float | None = Field(None, ge=0.0, le=10_000.0)
    """Deprecated: `expect.maxMeanErrorPx` (setting both is refused)."""
    expect: Expectations = Field(default_factory=Expectations)
    placement: Placement = "Any"
    server: PeerSpec = Field(default_factory=PeerSpec)
    client: PeerSpec = Field(default_factory=PeerSpec)
    signaling_timeout_seconds: int = Field(120, ge=5, le=3600)
    pending_timeout_seconds: int = Field(0, ge=0, le=MAX_PENDING_TIMEOUT)
    active_deadline_seconds: int = Field(3600, ge=0, le=604_800)
    image: str = Field("", max_length=512)
    resources: Resources = Field(default_factory=Resources)
    ice_servers: list[SessionIceServer] = Field(default_factory=list, max_length=8)
    live_view: bool = False

    @field_validator("pending_timeout_seconds")
    @classmethod
    def _pending_timeout_zero_or_long_enough(cls, value: int) -> int:
        if 0 < value < MIN_PENDING_TIMEOUT:
            raise ValueError(PENDING_TIMEOUT_RULE)
        return value

    @model_validator(mode="after")
    def _gates_consistent(self) -> BallSessionSpec:
        if self.max_mean_error_px is not None and self.expect.max_mean_error_px is not None:
            raise ValueError(
                "maxMeanErrorPx and expect.maxMeanErrorPx are both set: keep only "
                "expect.maxMeanErrorPx (the top-level field is deprecated)"
            )
        if self.expect.min_fps is not None and self.expect.min_fps > self.fps:
            raise ValueError(
                f"expect.minFps {self.expect.min_fps:g} can never be met at fps {self.fps}"
            )
        return self

    def peer(self, role: str) -> PeerSpec:
        """`spec.server` or `spec.client`."""
        return self.server if role == "server" else self.client

    def resources_of(self, role: str) -> dict[str, dict[str, Quantity]]:
        """The peer's container resources: its own requests/limits, else `spec.resources`'."""
        own = self.peer(role).resources or PeerResources()
        return {
            "requests": dict(own.requests if own.requests is not None else self.resources.requests),
            "limits": dict(own.limits if own.limits is not None else self.resources.limits),
        }

    @property
    def mean_error_gate(self) -> float:
        """The mean-error limit: expect's, else the deprecated field's, else the default."""
        for value in (self.expect.max_mean_error_px, self.max_mean_error_px):
            if value is not None:
                return value
        return DEFAULT_MAX_MEAN_ERROR_PX

    def session(self) -> SessionSpec:
        """Just the part the server peer needs."""
        return SessionSpec.model_validate(self.model_dump(include=set(SessionSpec.model_fields)))

    def record(self) -> dict[str, Any]:
        """The spec as recorded in `status.sessionSpec` (camelCase, defaults filled in)."""
        return self.model_dump(by_alias=True, mode="json", exclude_none=True)


class InvalidSpec(ValueError):
    """The spec cannot be run; the message is one line for the status condition."""


def parse_spec(raw: dict[str, Any], where: str = "spec") -> BallSessionSpec:
    """Validate a BallSession's spec; InvalidSpec with a readable one-line message if bad."""
    try:
        return BallSessionSpec.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        path = ".".join(str(p) for p in first["loc"])
        message = str(first["msg"]).removeprefix("Value error, ")
        raise InvalidSpec(f"{where}.{path}: {message}" if path else f"{where}: {message}") from None
