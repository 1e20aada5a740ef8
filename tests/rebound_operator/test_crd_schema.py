"""The CRD itself: a valid apiextensions.k8s.io/v1 object whose schema and CEL rules accept
every valid sample and reject every invalid one, as the API server would.

The emulated API server in the story tests validates nothing, so this is where admission is
tested: openAPIV3Schema with jsonschema (after applying the structural defaults, as the API
server does, and with unknown fields rejected, as kubectl's default strict field validation
does) and the x-kubernetes-validations rules with cel-python.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import celpy
import jsonschema
import kubernetes_validate
import pytest
import yaml
from celpy.adapter import json_to_cel
from rebound_operator.spec import InvalidSpec, parse_spec

REPO = Path(__file__).resolve().parents[2]
CRD = yaml.safe_load((REPO / "crds" / "ballsession.yaml").read_text())
VERSION = CRD["spec"]["versions"][0]
SCHEMA = VERSION["schema"]["openAPIV3Schema"]
SPEC_SCHEMA = SCHEMA["properties"]["spec"]
SAMPLES = Path(__file__).parent / "samples"
VALID = sorted((SAMPLES / "valid").glob("*.yaml"))
INVALID = sorted((SAMPLES / "invalid").glob("*.yaml"))


def apply_defaults(value: Any, schema: dict[str, Any]) -> Any:
    """Structural defaulting: fill missing properties from `default`, recursively."""
    if not isinstance(value, dict) or schema.get("type") != "object":
        return value
    result = dict(value)
    for name, sub in (schema.get("properties") or {}).items():
        if name not in result and "default" in sub:
            result[name] = copy.deepcopy(sub["default"])
        if name in result:
            result[name] = apply_defaults(result[name], sub)
    return result


def strict(schema: dict[str, Any]) -> dict[str, Any]:
    """The schema with unknown fields rejected (strict field validation)."""
    schema = copy.deepcopy(schema)

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if node.get("type") == "object" and "properties" in node:
                node.setdefault("additionalProperties", False)
            for child in node.values():
                walk(child)
        elif isinstance(node, list):
            for child in node:
                walk(child)

    walk(schema)
    return schema


def typed(value: Any, schema: dict[str, Any]) -> Any:
    """Numbers as the API server hands them to CEL: `type: number` fields are doubles."""
    if isinstance(value, dict):
        props = schema.get("properties") or {}
        return {k: typed(v, props.get(k, {})) for k, v in value.items()}
    if isinstance(value, list):
        return [typed(v, schema.get("items") or {}) for v in value]
    if schema.get("type") == "number" and isinstance(value, int | float):
        return float(value)
    return value


CEL = celpy.Environment()


def _rules(
    schema: dict[str, Any], value: Any, old: Any
) -> Iterator[tuple[dict[str, Any], Any, Any]]:
    """Every (rule, self, oldSelf) the API server would evaluate, at every level of `value`."""
    for rule in schema.get("x-kubernetes-validations") or []:
        yield rule, value, old
    if isinstance(value, dict):
        props = schema.get("properties") or {}
        extra = schema.get("additionalProperties")
        for name, sub_value in value.items():
            sub = props.get(name, extra if isinstance(extra, dict) else None)
            if sub is not None:
                sub_old = old.get(name) if isinstance(old, dict) else None
                yield from _rules(sub, sub_value, sub_old)
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for item in value:  # atomic lists: items have no oldSelf to correlate with
            yield from _rules(schema["items"], item, None)


def cel_failures(
    new: dict[str, Any], old: dict[str, Any] | None = None, schema: dict[str, Any] = SPEC_SCHEMA
) -> list[str]:
    """Messages of the x-kubernetes-validations rules (at any depth) that `new` violates.

    Transition rules (those naming oldSelf) run only on update, as in the API server.
    """
    failures = []
    for rule, value, previous in _rules(schema, typed(new, schema), typed(old, schema)):
        transition = "oldSelf" in rule["rule"]
        if transition and previous is None:
            continue
        activation = {"self": json_to_cel(value)}
        if transition:
            activation["oldSelf"] = json_to_cel(previous)
        program = CEL.program(CEL.compile(rule["rule"]))
        if not bool(program.evaluate(activation)):
            failures.append(rule["message"])
    return failures


def admit(document: dict[str, Any]) -> list[str]:
    """What the API server would say: schema errors, then CEL rule messages."""
    document = apply_defaults(document, SCHEMA)
    validator = jsonschema.Draft7Validator(strict(SCHEMA))
    errors = [f"{'.'.join(map(str, e.path))}: {e.message}" for e in validator.iter_errors(document)]
    return errors or cel_failures(document, schema=SCHEMA)


def test_crd_is_a_valid_apiextensions_v1_object() -> None:
    kubernetes_validate.validate(CRD, "1.31", strict=True)
    assert CRD["metadata"]["name"] == "ballsessions.rebound.dev"
    assert VERSION["subresources"] == {"status": {}}
    assert "bs" in CRD["spec"]["names"]["shortNames"]


def test_printer_columns_point_at_declared_status_fields() -> None:
    columns = {c["name"]: c["jsonPath"] for c in VERSION["additionalPrinterColumns"]}
    assert list(columns)[:7] == [
        "Phase",
        "Ready",
        "Mean Err (px)",
        "P95 (px)",
        "FPS",
        "Frames",
        "Age",
    ]
    assert columns["Ready"] == '.status.conditions[?(@.type=="Ready")].status'
    status = SCHEMA["properties"]["status"]["properties"]
    for path in columns.values():
        parts = re.sub(r"\[\?\(.*?\)\]", "", path).strip(".").split(".")
        if parts[0] != "status":
            continue
        node: dict[str, Any] = {"properties": status}
        for part in parts[1:]:
            node = node["properties"][part] if "properties" in node else node["items"]
            if node.get("type") == "array":
                node = node["items"]


UNDEFAULTED = {"maxMeanErrorPx"}
"""Deprecated; whether it is set matters (CEL refuses it next to expect.maxMeanErrorPx)."""


def _leaves(schema: dict[str, Any], path: str) -> Iterator[tuple[str, dict[str, Any]]]:
    yield path, schema
    for name, sub in (schema.get("properties") or {}).items():
        yield from _leaves(sub, f"{path}.{name}")
    for key in ("items", "additionalProperties"):
        if isinstance(schema.get(key), dict):
            yield from _leaves(schema[key], f"{path}[]")


def test_every_spec_field_has_a_default_and_bounds_at_every_depth() -> None:
    for name, field in SPEC_SCHEMA["properties"].items():
        assert ("default" in field) != (name in UNDEFAULTED), name
    # Bounded everywhere: the API server estimates the cost of `self == oldSelf` from them.
    for path, field in _leaves(SPEC_SCHEMA, "spec"):
        kind = field.get("type")
        if kind in ("integer", "number"):
            assert "minimum" in field and "maximum" in field, path
        if kind == "string" and "enum" not in field:
            assert "maxLength" in field, path
        if kind == "array":
            assert "maxItems" in field, path
        if kind == "object" and "additionalProperties" in field:
            assert "maxProperties" in field, path


def test_status_declares_every_field_the_operator_writes() -> None:
    from peers.metrics import SUMMARY_KEYS

    status = SCHEMA["properties"]["status"]["properties"]
    assert set(SUMMARY_KEYS) <= set(status["metrics"]["properties"])
    assert {
        "phase",
        "reason",
        "message",
        "conditions",
        "metrics",
        "serverPod",
        "clientPod",
        "startTime",
        "completionTime",
        "observedGeneration",
        "sessionSpec",
    } <= set(status)
    condition = status["conditions"]
    assert condition["x-kubernetes-list-type"] == "map"
    assert condition["x-kubernetes-list-map-keys"] == ["type"]
    assert status["sessionSpec"]["x-kubernetes-preserve-unknown-fields"] is True


def test_a_status_the_operator_writes_is_admitted_by_the_status_schema() -> None:
    from rebound_operator.lifecycle import failed_status

    written = failed_status("InternalError", "x" * 5000, datetime(2026, 1, 1, tzinfo=UTC), None, 3)
    written["sessionSpec"] = parse_spec({}).record()
    validator = jsonschema.Draft7Validator(strict(SCHEMA["properties"]["status"]))
    assert [e.message for e in validator.iter_errors(written)] == []


def test_schema_defaults_match_the_operator_model() -> None:
    defaulted = apply_defaults({}, SPEC_SCHEMA)
    model = parse_spec({}).model_dump(by_alias=True, mode="json", exclude_none=True)
    assert defaulted == model


@pytest.mark.parametrize("path", VALID, ids=lambda p: p.stem)
def test_valid_samples_are_admitted(path: Path) -> None:
    document = yaml.safe_load(path.read_text())
    assert admit(document) == []
    parse_spec(apply_defaults(document, SCHEMA)["spec"])  # and the operator agrees


@pytest.mark.parametrize("path", INVALID, ids=lambda p: p.stem)
def test_invalid_samples_are_rejected_for_the_expected_reason(path: Path) -> None:
    text = path.read_text()
    expected = text.splitlines()[0].removeprefix("# expect: ")
    problems = admit(yaml.safe_load(text))
    assert problems, f"{path.name} was admitted"
    assert any(expected in p for p in problems), problems


def test_spec_is_immutable_after_creation() -> None:
    old = apply_defaults({}, SPEC_SCHEMA)
    assert cel_failures(old, old) == []
    changed = {**old, "fps": 60}
    assert any("immutable" in m for m in cel_failures(changed, old))


def test_cel_evaluates_the_fit_rule_faithfully_at_the_boundary() -> None:
    spec = apply_defaults({"width": 128, "height": 144}, SPEC_SCHEMA)
    assert cel_failures({**spec, "radius": 63}) == []  # 2*63+2 = 128 = width = height-16
    assert cel_failures({**spec, "radius": 63.5})  # one half pixel too big


def test_nested_and_root_rules_are_evaluated_per_item() -> None:
    good = {"urls": ["stun:s:3478"]}
    ref = {"name": "turn", "key": "password"}
    turn = {"urls": ["turn:t:3478"], "username": "u", "credentialSecretRef": ref}
    spec = apply_defaults({"iceServers": [good, turn]}, SPEC_SCHEMA)
    assert cel_failures(spec) == []
    bad = {**spec, "iceServers": [good, {"urls": ["turn:t:3478"]}]}
    assert cel_failures(bad) == ["turn: and turns: URLs need a username and credentialSecretRef"]
    document = {"metadata": {"name": "x" * 64}, "spec": spec}
    assert any("63 characters" in m for m in cel_failures(document, schema=SCHEMA))


def test_the_operator_model_agrees_with_the_crd_on_ice_server_credentials() -> None:
    ref = {"name": "turn", "key": "password"}
    assert parse_spec(
        {"iceServers": [{"urls": ["turn:t:1"], "username": "u", "credentialSecretRef": ref}]}
    )
    for server, message in (
        ({"urls": ["turn:t:1"], "username": "u", "credential": "p"}, "Extra inputs"),
        ({"urls": ["turn:t:1"]}, "need a username and credentialSecretRef"),
        ({"urls": ["stun:s:1"], "username": "u"}, "go together"),
        ({"urls": ["turn:t:1"], "username": "u", "credentialSecretRef": {"name": "X_"}}, "name"),
    ):
        with pytest.raises(InvalidSpec, match=message):
            parse_spec({"iceServers": [server]})


def test_transition_rules_run_only_on_update() -> None:
    spec = apply_defaults({}, SPEC_SCHEMA)
    changed = {**spec, "seed": 7}
    assert cel_failures(changed) == []  # creation: no oldSelf
    assert cel_failures(changed, spec) == [
        "spec is immutable: delete and re-create the BallSession to change it"
    ]
    # A number written as an integer is still the same double to CEL: no false "change".
    assert cel_failures({**spec, "radius": 20}, {**spec, "radius": 20.0}) == []


def test_the_operator_model_rejects_what_the_crd_rejects_for_the_ball_fit() -> None:
    for name in ("width-200-height-240-radius-100", "height-too-small-for-radius", "radius-300"):
        document = yaml.safe_load((SAMPLES / "invalid" / f"{name}.yaml").read_text())
        with pytest.raises(InvalidSpec, match="does not fit"):
            parse_spec(apply_defaults(document, SCHEMA)["spec"])


def test_the_operator_model_agrees_with_the_crd_on_the_pending_timeout() -> None:
    from rebound_operator.spec import PENDING_TIMEOUT_RULE

    rule = SPEC_SCHEMA["properties"]["pendingTimeoutSeconds"]["x-kubernetes-validations"][0]
    assert rule["message"] == PENDING_TIMEOUT_RULE
    for value in (0, 10, 86_400):
        assert parse_spec({"pendingTimeoutSeconds": value}).pending_timeout_seconds == value
    for value in (1, 9):
        with pytest.raises(InvalidSpec, match="must be 0"):
            parse_spec({"pendingTimeoutSeconds": value})
    with pytest.raises(InvalidSpec, match="less than or equal to 86400"):
        parse_spec({"pendingTimeoutSeconds": 86_401})


def _upstream_definitions() -> dict[str, Any]:
    import json

    folder = Path(kubernetes_validate.__file__).parent / "kubernetes-json-schema"
    newest = sorted(
        folder.glob("v1.*-local-strict"),
        key=lambda p: [int(x) for x in p.name[1:].split("-")[0].split(".")],
    )[-1]
    return dict(json.loads((newest / "_definitions.json").read_text())["$defs"])


def _shape(schema: dict[str, Any], defs: dict[str, Any], depth: int = 0) -> Any:
    """Property names and item shapes of a schema, following upstream `$ref`s."""
    if "$ref" in schema:
        schema = defs[schema["$ref"].rsplit("/", 1)[-1]]
    if depth > 12:
        return "..."
    if schema.get("properties"):
        return {k: _shape(v, defs, depth + 1) for k, v in sorted(schema["properties"].items())}
    if isinstance(schema.get("items"), dict):
        return [_shape(schema["items"], defs, depth + 1)]
    kinds = schema.get("type")
    return "map" if isinstance(schema.get("additionalProperties"), dict) else str(kinds)


def _names(shape: Any) -> Any:
    """Only the nesting of property names (types are compared through the samples)."""
    if isinstance(shape, dict):
        return {k: _names(v) for k, v in shape.items()}
    if isinstance(shape, list):
        return [_names(shape[0])]
    return None


@pytest.mark.parametrize(
    ("field", "upstream"),
    [
        ("affinity", "io.k8s.api.core.v1.Affinity"),
        ("tolerations", "io.k8s.api.core.v1.Toleration"),
    ],
)
def test_peer_scheduling_fields_have_exactly_the_upstream_shape(field: str, upstream: str) -> None:
    defs = _upstream_definitions()
    ours = SPEC_SCHEMA["properties"]["server"]["properties"][field]
    if ours.get("type") == "array":
        ours = ours["items"]
    assert _names(_shape(ours, defs)) == _names(_shape(defs[upstream], defs))


def test_server_and_client_take_the_same_fields() -> None:
    def without_descriptions(node: Any) -> Any:
        if isinstance(node, dict):
            return {k: without_descriptions(v) for k, v in node.items() if k != "description"}
        if isinstance(node, list):
            return [without_descriptions(v) for v in node]
        return node

    props = SPEC_SCHEMA["properties"]
    assert without_descriptions(props["server"]) == without_descriptions(props["client"])
    assert "nodeName" not in props["server"]["properties"]


def test_gate_rules_refuse_both_mean_fields_and_an_unreachable_fps() -> None:
    spec = apply_defaults({"expect": {"maxMeanErrorPx": 0.5}}, SPEC_SCHEMA)
    assert cel_failures(spec) == []
    assert cel_failures({**spec, "maxMeanErrorPx": 0.5}) == [
        "maxMeanErrorPx is deprecated: set only expect.maxMeanErrorPx, not both"
    ]
    legacy = apply_defaults({"maxMeanErrorPx": 0.5}, SPEC_SCHEMA)
    assert cel_failures(legacy) == []
    fps = apply_defaults({"fps": 30, "expect": {"minFps": 30}}, SPEC_SCHEMA)
    assert cel_failures(fps) == []
    assert cel_failures({**fps, "expect": {"minFps": 30.5}}) == [
        "expect.minFps can never be met: it is above spec.fps"
    ]


def test_status_declares_placement_and_gates() -> None:
    status = SCHEMA["properties"]["status"]["properties"]
    assert {"serverNode", "clientNode", "serverPodIP", "clientPodIP", "gates"} <= set(status)
    columns = {c["name"]: c for c in VERSION["additionalPrinterColumns"]}
    assert columns["Server Node"]["jsonPath"] == ".status.serverNode"
    assert columns["Client Node"]["jsonPath"] == ".status.clientNode"
    assert columns["Server Node"]["priority"] == 1  # -o wide


def test_a_judged_status_with_the_link_keys_is_admitted_by_the_status_schema() -> None:
    import json

    from rebound_operator.lifecycle import Observation, PodView, Signals, evaluate

    from peers.config import LINK_SUMMARY_KEYS

    link = {
        "codec": "VP8",
        "target_bitrate_kbps": 1000,
        "measured_bitrate_kbps": 990.1,
        "frames_unreadable": 0,
        "frames_incomplete": 0,
        "ice_local_candidate_type": "relay",
        "ice_remote_candidate_type": "host",
        "ice_protocol": "tcp",
        "rtt_ms": 12.0,
        "packets_lost": 0,
        "packet_loss_pct": 0.0,
    }
    summary = {
        "frames_sent": 300,
        "coordinates_received": 300,
        "frames_matched": 300,
        "frames_dropped_by_client": 0,
        "mean_error_px": 0.02,
        "p95_error_px": 0.05,
        "max_error_px": 0.1,
        "achieved_fps": 30.0,
        "latency_ms_p50": 12.0,
        "latency_ms_p95": 14.0,
        **link,
    }
    now = datetime(2026, 1, 1, tzinfo=UTC)
    done = PodView("s-server", "Succeeded", exit_code=0, started=True, finished_at=now)
    obs = Observation(
        now=now,
        start=now,
        server=done,
        client=done,
        signals=Signals.read({"offer": "o", "summary": json.dumps(summary)}, {"answer": "a"}),
    )
    spec = parse_spec({"expect": {"minFps": 29}})
    written = evaluate(spec, obs, {"phase": "Connected"}, generation=1).status
    assert written["candidatePair"] == "relay/host tcp"
    assert {k: written["metrics"][k] for k in LINK_SUMMARY_KEYS} == link
    status = SCHEMA["properties"]["status"]
    assert set(LINK_SUMMARY_KEYS) <= set(status["properties"]["metrics"]["properties"])
    validator = jsonschema.Draft7Validator(strict(with_nulls(status)))
    assert [e.message for e in validator.iter_errors(written)] == []
    unmeasured = {**written, "metrics": {**written["metrics"], **dict.fromkeys(link)}}
    assert [e.message for e in validator.iter_errors(unmeasured)] == []


def with_nulls(schema: Any) -> Any:
    """OpenAPI's `nullable: true` as JSON Schema says it (a null is allowed)."""
    if isinstance(schema, dict):
        result = {k: with_nulls(v) for k, v in schema.items() if k != "nullable"}
        if schema.get("nullable") and "type" in schema:
            result["type"] = [schema["type"], "null"]
            if "enum" in schema:
                result["enum"] = [*schema["enum"], None]
        return result
    if isinstance(schema, list):
        return [with_nulls(v) for v in schema]
    return schema
