"""Pass/fail gates on a completed session's summary (`spec.expect`), pure.

Each gate compares one measured value with the limit the spec gives; a session Succeeds only
if every gate given holds. A gate whose value was not measured (null in the summary) does not
hold: a gate is a promise about the path, and nothing measured promises nothing.

The mean-error gate always applies: `expect.maxMeanErrorPx`, else the deprecated top-level
`maxMeanErrorPx`, else 1.0 px. A session that names no gate in `spec.expect` is judged as
before `expect` existed: its only gate is the mean error and its failure reason stays
`ErrorTooHigh`; any other failure is `ExpectationNotMet`, naming every gate not met and by
how much.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from rebound_operator.spec import BallSessionSpec

EXPECTATION_NOT_MET = "ExpectationNotMet"
ERROR_TOO_HIGH = "ErrorTooHigh"
"""The reason of the mean-error gate alone in a session without `spec.expect` gates."""

Reading = Callable[[Mapping[str, Any]], float | None]


def _key(name: str) -> Reading:
    def read(metrics: Mapping[str, Any]) -> float | None:
        value = metrics.get(name)
        return (
            float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None
        )

    return read


def _matched_ratio(metrics: Mapping[str, Any]) -> float | None:
    sent, matched = metrics.get("frames_sent"), metrics.get("frames_matched")
    if not isinstance(sent, int) or not isinstance(matched, int) or sent <= 0:
        return None
    return matched / sent


@dataclass(frozen=True)
class GateKind:
    """One kind of gate: the spec field, what it measures, and which way it points."""

    field: str
    """camelCase name in `spec.expect` (and in `status.gates`)."""
    attribute: str
    """snake_case name on `Expectations`."""
    what: str
    unit: str
    upper: bool
    """True: the measured value must not exceed the limit; False: must reach it."""
    read: Reading


KINDS: tuple[GateKind, ...] = (
    GateKind(
        "maxMeanErrorPx", "max_mean_error_px", "mean error", "px", True, _key("mean_error_px")
    ),
    GateKind("maxP95ErrorPx", "max_p95_error_px", "p95 error", "px", True, _key("p95_error_px")),
    GateKind("minMatchedRatio", "min_matched_ratio", "matched ratio", "", False, _matched_ratio),
    GateKind("minFps", "min_fps", "frame rate", "fps", False, _key("achieved_fps")),
    GateKind(
        "maxLatencyMsP95", "max_latency_ms_p95", "latency p95", "ms", True, _key("latency_ms_p95")
    ),
)


def _amount(value: float, unit: str) -> str:
    return f"{value:.4g} {unit}".rstrip()


@dataclass(frozen=True)
class Gate:
    """One gate's verdict on a summary."""

    kind: GateKind
    limit: float
    measured: float | None

    @property
    def met(self) -> bool:
        """The measured value is on the right side of the limit (unmeasured: not met)."""
        if self.measured is None:
            return False
        return self.measured <= self.limit if self.kind.upper else self.measured >= self.limit

    def describe(self) -> str:
        """One clause for a message: which gate, the value, the limit and by how much."""
        kind, unit = self.kind, self.kind.unit
        limit = _amount(self.limit, unit)
        if self.measured is None:
            return f"{kind.field} {limit}: {kind.what} was not measured"
        measured = _amount(self.measured, unit)
        if self.met:
            return f"{kind.field} {limit}: {kind.what} {measured}"
        gap = _amount(abs(self.measured - self.limit), unit)
        if kind.upper:
            return f"{kind.field} {limit}: {kind.what} {measured} exceeds it by {gap}"
        return f"{kind.field} {limit}: {kind.what} {measured} falls short by {gap}"

    def record(self) -> dict[str, Any]:
        """The gate as `status.gates` lists it."""
        return {
            "name": self.kind.field,
            "limit": self.limit,
            "measured": self.measured,
            "met": self.met,
        }


def limits(spec: BallSessionSpec) -> list[tuple[GateKind, float]]:
    """Every gate that applies to a session, with its limit (the mean error always)."""
    result: list[tuple[GateKind, float]] = []
    for kind in KINDS:
        if kind.field == "maxMeanErrorPx":
            result.append((kind, spec.mean_error_gate))
            continue
        value = getattr(spec.expect, kind.attribute)
        if value is not None:
            result.append((kind, float(value)))
    return result


def judge(spec: BallSessionSpec, metrics: Mapping[str, Any]) -> list[Gate]:
    """Each applicable gate against a validated summary (metrics.check_metrics)."""
    return [Gate(kind, limit, kind.read(metrics)) for kind, limit in limits(spec)]


def failure(spec: BallSessionSpec, gates: list[Gate]) -> tuple[str, str] | None:
    """(reason, message) if a gate is not met, else None."""
    failed = [g for g in gates if not g.met]
    if not failed:
        return None
    legacy = not spec.expect.given and [g.kind.field for g in failed] == ["maxMeanErrorPx"]
    if legacy:
        gate = failed[0]
        if gate.measured is not None:
            return ERROR_TOO_HIGH, (
                f"mean error {gate.measured:.4g} px exceeds maxMeanErrorPx {gate.limit:g}"
            )
    noun = "gate" if len(gates) == 1 else "gates"
    clauses = "; ".join(g.describe() for g in failed)
    return EXPECTATION_NOT_MET, f"{len(failed)} of {len(gates)} {noun} not met: {clauses}"
