import os
import socket
import subprocess
import sys

import pytest
from rebound_operator.__main__ import build_parser, load_settings
from rebound_operator.settings import OperatorSettings
from rebound_operator.spec import BallSessionSpec, InvalidSpec, parse_spec


def test_defaults() -> None:
    spec = parse_spec({})
    assert isinstance(spec, BallSessionSpec)
    assert (spec.frames, spec.mean_error_gate, spec.signaling_timeout_seconds) == (300, 1.0, 120)
    assert spec.max_mean_error_px is None and not spec.expect.given and spec.placement == "Any"
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


def test_flags_override_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REBOUND_PEER_IMAGE", "from-env:1")
    monkeypatch.setenv("REBOUND_LOG_FORMAT", "json")
    args = build_parser().parse_args(["-n", "x", "-n", "y", "--log-format", "plain"])
    settings = load_settings(args)
    assert settings.namespaces == ["x", "y"]
    assert settings.peer_image == "from-env:1"
    assert settings.log_format == "plain"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run_operator(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("REBOUND_")}
    return subprocess.run(
        [sys.executable, "-m", "rebound_operator", *args],
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (["--pending-timeout", "5"], {}, "--pending-timeout 5: Input should be greater than"),
        (["--pending-timeout", "abc"], {}, "argument --pending-timeout: invalid int value"),
        (["--log-format", "xml"], {}, "argument --log-format: invalid choice: 'xml'"),
        (["-n", "Not_A_Namespace"], {}, "--namespace Not_A_Namespace: not a namespace name"),
        (["--liveness", "ftp://x"], {}, "--liveness ftp://x: must be an http:// URL"),
        (["--liveness", "http://0.0.0.0/healthz"], {}, "needs a port"),
        (["--liveness", "http://0.0.0.0:8080/metrics"], {}, "/metrics is where the metrics"),
        ([], {"REBOUND_NAMESPACES": "notjson"}, "REBOUND_NAMESPACES: not valid JSON"),
        ([], {"REBOUND_LOG_FORMAT": "xml"}, "REBOUND_LOG_FORMAT=xml: Input should be 'plain'"),
        ([], {"REBOUND_PENDING_TIMEOUT_SECONDS": "abc"}, "REBOUND_PENDING_TIMEOUT_SECONDS=abc:"),
        ([], {"REBOUND_PENDING_TIMEOUT_SECONDS": "999999"}, "less than or equal to 86400"),
        ([], {"REBOUND_ALLOWED_IMAGES": '[""]'}, "REBOUND_ALLOWED_IMAGES="),
    ],
)
def test_bad_flags_and_environment_are_one_line_and_exit_2(
    args: list[str],
    env: dict[str, str],
    message: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from rebound_operator.__main__ import main

    for name in list(os.environ):
        if name.startswith("REBOUND_"):
            monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(SystemExit) as exited:
        main(args)
    assert exited.value.code == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("python -m rebound_operator: error: "), line
    assert message in line, line


def test_the_real_entry_point_prints_no_traceback() -> None:
    result = run_operator("--pending-timeout", "5", REBOUND_NAMESPACES="notjson")
    assert result.returncode == 2
    assert result.stderr == (
        "python -m rebound_operator: error: REBOUND_NAMESPACES: not valid JSON "
        """(a JSON list such as '["a"]')\n"""
    )


def test_help_shows_every_default_and_bound() -> None:
    result = run_operator("--help")
    assert result.returncode == 0
    text = " ".join(result.stdout.split())
    for flag, shown in (
        ("--namespace", "Default: all namespaces"),
        ("--peer-image", "default ghcr.io/rebound-dev/rebound-peer:0.1.0"),
        ("--allowed-image", "Default: only the --peer-image"),
        ("--image-pull-policy", "default IfNotPresent"),
        ("--log-format", "default plain"),
        ("--liveness", "default http://0.0.0.0:8080/healthz"),
        ("--peering", "default off"),
        ("--priority", "default 0"),
        ("--pending-timeout", "10..86400; default 300"),
        ("--verbose", "default off"),
    ):
        assert flag in text and shown in text, (flag, shown)
    for field in OperatorSettings.model_fields:
        assert f"REBOUND_{field.upper()}" in text, field


def test_main_runs_kopf_with_the_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    import kopf
    from rebound_operator import __main__ as entry

    calls: list[dict[str, object]] = []
    formats: list[dict[str, object]] = []

    async def operator(**kwargs: object) -> None:
        calls.append(kwargs)

    monkeypatch.setattr(kopf, "operator", operator)
    monkeypatch.setattr(kopf, "configure", lambda **kwargs: formats.append(kwargs))
    monkeypatch.setenv("REBOUND_PEER_IMAGE", "env:1")
    monkeypatch.setenv("POD_ID", "rebound-operator-abc")
    assert entry.main(["-n", "team-a", "--liveness", "", "--pending-timeout", "30"]) == 0
    (run,) = calls
    assert run["namespaces"] == ["team-a"] and run["clusterwide"] is False
    # kopf's own liveness endpoint is never used: the operator serves it with /metrics
    assert run["standalone"] is True and run["liveness_endpoint"] is None
    assert run["identity"] == "rebound-operator-abc"
    settings = run["memo"].settings  # type: ignore[attr-defined]
    assert (settings.peer_image, settings.pending_timeout_seconds) == ("env:1", 30)
    assert settings.liveness == ""
    # plain logs: time, logger, level and the object's namespace/name prefix
    assert formats[0]["log_format"] is kopf.LogFormat.FULL and formats[0]["log_prefix"] is True
    calls.clear()
    monkeypatch.delenv("POD_ID")
    entry.main(["--liveness", f"http://127.0.0.1:{free_port()}/healthz"])
    assert calls[0]["clusterwide"] is True and calls[0]["namespaces"] == []
    assert calls[0]["liveness_endpoint"] is None
    assert str(calls[0]["identity"]).startswith("rebound-operator@")


def test_a_taken_port_is_one_line_and_exit_2() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_operator("--liveness", f"http://127.0.0.1:{port}/healthz")
    assert result.returncode == 2, result.stderr
    (line,) = result.stderr.splitlines()
    assert line.startswith(
        f"python -m rebound_operator: error: --liveness http://127.0.0.1:{port}/healthz: "
        "cannot listen: "
    ), line


def test_identity_never_asks_for_the_user_name(monkeypatch: pytest.MonkeyPatch) -> None:
    import getpass

    from rebound_operator.__main__ import identity

    def no_passwd_entry() -> str:
        raise KeyError("getpwuid(): uid not found: 10001")

    monkeypatch.setattr(getpass, "getuser", no_passwd_entry)
    monkeypatch.delenv("POD_ID", raising=False)
    assert identity().startswith("rebound-operator@")
    monkeypatch.setenv("POD_ID", "rebound-operator-7d9f")
    assert identity() == "rebound-operator-7d9f"
