import pytest
from pydantic import ValidationError

from peers import cli
from peers.config import IceServer, SessionSpec
from peers.server import build_parser, spec_from_args


def test_defaults_and_camel_case_aliases() -> None:
    spec = SessionSpec.model_validate({"durationSeconds": 12, "fps": 60})
    assert spec.duration_seconds == 12
    assert spec.fps == 60
    assert spec.frames == 300
    assert spec.model_dump(by_alias=True)["durationSeconds"] == 12


def test_unknown_fields_are_rejected() -> None:
    with pytest.raises(ValidationError):
        SessionSpec.model_validate({"colour": "red"})


def test_ball_must_fit_the_arena_below_the_marker_band() -> None:
    SessionSpec(width=200, height=120, radius=50)  # 2*50+2 = 102 <= 120-16
    with pytest.raises(ValidationError, match="does not fit a 200x110 frame"):
        SessionSpec(width=200, height=110, radius=50)


def test_peer_args_reproduce_the_spec_through_the_server_cli() -> None:
    spec = SessionSpec(
        width=800,
        height=600,
        fps=25,
        radius=12.5,
        speed=99.5,
        seed=7,
        frames=0,
        duration_seconds=4.5,
        codec="H264",
        bitrate_kbps=2500,
    )
    args = build_parser().parse_args(spec.to_peer_args())
    assert spec_from_args(args) == spec


@pytest.mark.parametrize(
    "fields", [{"codec": "AV1"}, {"codec": "vp8"}, {"bitrateKbps": 49}, {"bitrateKbps": 50_001}]
)
def test_codec_and_bitrate_are_bounded(fields: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        SessionSpec.model_validate(fields)
    assert SessionSpec.model_validate({"bitrateKbps": 50}).bitrate_kbps == 50


def test_unlimited() -> None:
    assert SessionSpec(frames=0).unlimited
    assert not SessionSpec(frames=0, duration_seconds=1).unlimited


def test_ice_servers_parse_and_never_default_to_public_stun() -> None:
    assert cli.rtc_configuration([]).iceServers == []
    servers = cli.parse_ice_servers(
        '[{"urls": ["turn:t:3478"], "username": "u", "credential": "p"}]'
    )
    assert servers == [IceServer(urls=["turn:t:3478"], username="u", credential="p")]
    config = cli.rtc_configuration(servers)
    assert config.iceServers[0].urls == ["turn:t:3478"]
    with pytest.raises(cli.UsageError, match="--ice-servers"):
        cli.parse_ice_servers('[{"url": "stun:x"}]')
