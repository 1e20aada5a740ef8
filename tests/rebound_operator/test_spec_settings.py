import pytest
from rebound_operator.__main__ import build_parser
from rebound_operator.settings import OperatorSettings
from rebound_operator.spec import BallSessionSpec, InvalidSpec, parse_spec


def test_defaults() -> None:
    spec = parse_spec({})
    assert isinstance(spec, BallSessionSpec)
    assert (spec.frames, spec.max_mean_error_px, spec.signaling_timeout_seconds) == (300, 1.0, 120)
    assert spec.session().frames == 300
    assert spec.ice_servers == []


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"fps": 0}, "spec.fps: Input should be greater than or equal to 1"),
        ({"radius": 400}, "does not fit a 640x480 frame"),
        ({"colour": "red"}, "spec.colour: Extra inputs are not permitted"),
        ({"iceServers": [{"urls": []}]}, "spec.iceServers.0.urls"),
        ({"resources": {"requests": {"cpu": [1]}}}, "spec.resources.requests.cpu"),
    ],
)
def test_invalid_specs_give_one_readable_line(raw: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidSpec) as info:
        parse_spec(raw)
    text = str(info.value)
    assert message in text
    assert "\n" not in text


def test_settings_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REBOUND_NAMESPACES", '["a", "b"]')
    monkeypatch.setenv("REBOUND_PEER_IMAGE", "peer:9")
    monkeypatch.setenv("REBOUND_LOG_FORMAT", "json")
    settings = OperatorSettings()
    assert settings.namespaces == ["a", "b"]
    assert settings.peer_image == "peer:9"
    assert settings.log_format == "json"


def test_flags_override_environment_defaults() -> None:
    defaults = OperatorSettings(peer_image="from-env:1")
    args = build_parser(defaults).parse_args(["-n", "x", "-n", "y", "--log-format", "json"])
    assert args.namespaces == ["x", "y"]
    assert args.peer_image == "from-env:1"
    assert args.log_format == "json"
    with pytest.raises(SystemExit):
        build_parser(defaults).parse_args(["--log-format", "xml"])


def test_main_runs_kopf_with_the_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    import kopf
    from rebound_operator import __main__ as entry

    calls: list[dict[str, object]] = []
    monkeypatch.setattr(kopf, "run", lambda **kwargs: calls.append(kwargs))
    monkeypatch.setattr(kopf, "configure", lambda **_: None)
    monkeypatch.setenv("REBOUND_PEER_IMAGE", "env:1")
    assert entry.main(["-n", "team-a", "--liveness", "", "--pending-timeout", "30"]) == 0
    (run,) = calls
    assert run["namespaces"] == ["team-a"] and run["clusterwide"] is False
    assert run["standalone"] is True and run["liveness_endpoint"] is None
    settings = run["memo"].settings  # type: ignore[attr-defined]
    assert (settings.peer_image, settings.pending_timeout_seconds) == ("env:1", 30)
    calls.clear()
    entry.main([])
    assert calls[0]["clusterwide"] is True and calls[0]["namespaces"] == []
    assert calls[0]["liveness_endpoint"] == "http://0.0.0.0:8080/healthz"
