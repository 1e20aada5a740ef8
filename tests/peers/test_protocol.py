import json

import pytest

from peers import protocol
from peers.protocol import ClientStats, Coordinate, End, ProtocolError


def test_round_trips() -> None:
    assert protocol.decode(protocol.encode_coordinate(7, 1.23456, 9.87654)) == Coordinate(
        7, 1.2346, 9.8765
    )
    stats = ClientStats(10, 1, 2, 3, final=True)
    assert protocol.decode(protocol.encode_stats(stats)) == stats
    assert protocol.decode(protocol.encode_end(150)) == End(150)


def test_integers_are_accepted_as_coordinates() -> None:
    assert protocol.decode('{"k":"c","f":1,"x":3,"y":4}') == Coordinate(1, 3.0, 4.0)


@pytest.mark.parametrize(
    ("message", "reason"),
    [
        (b"\x00\x01", "binary"),
        (12345, "bad_type"),
        ("x" * 10_000, "too_large"),
        ("not json", "not_json"),
        ("[" * 400 + "]" * 400, "too_large"),
        ("[" * 200 + "]" * 200, "not_object"),
        ('"string"', "not_object"),
        ("[1,2]", "not_object"),
        ('{"k":"c","f":1,"x":NaN,"y":1}', "not_finite"),
        ('{"k":"c","f":1,"x":Infinity,"y":1}', "not_finite"),
        ('{"k":"c","f":1,"x":1e400,"y":1}', "not_finite"),
        ('{"k":"c","f":1,"x":1e7,"y":1}', "not_finite"),
        ('{"k":"c","f":true,"x":1,"y":1}', "bad_frame"),
        ('{"k":"c","f":-1,"x":1,"y":1}', "bad_frame"),
        ('{"k":"c","f":1.5,"x":1,"y":1}', "bad_frame"),
        ('{"k":"c","f":99999999999,"x":1,"y":1}', "bad_frame"),
        ('{"k":"c","f":16777215,"x":1,"y":1}', "bad_frame"),
        ('{"k":"c","f":1,"x":"1","y":1}', "bad_type"),
        ('{"k":"c","f":1,"x":true,"y":1}', "bad_type"),
        ('{"k":"c","f":1,"x":null,"y":1}', "bad_type"),
        ('{"k":"c","f":1,"x":1}', "bad_fields"),
        ('{"k":"c","f":1,"x":1,"y":1,"z":1}', "bad_fields"),
        (
            '{"k":"s","received":1,"dropped":0,"unreadable":0,"missed":-1,"final":false}',
            "bad_field",
        ),
        ('{"k":"s","received":1,"dropped":0,"unreadable":0,"missed":0,"final":1}', "bad_fields"),
        ('{"k":"end","frames":"many"}', "bad_field"),
        ('{"k":"zzz"}', "unknown_kind"),
        ("{}", "unknown_kind"),
    ],
)
def test_rejects_malformed_and_hostile_messages(message: object, reason: str) -> None:
    with pytest.raises(ProtocolError) as info:
        protocol.decode(message)
    assert info.value.reason == reason


def test_encoders_never_emit_nan() -> None:
    with pytest.raises(ValueError):
        protocol.encode_coordinate(1, float("nan"), 0.0)


def test_wire_form_is_compact_json() -> None:
    text = protocol.encode_coordinate(3, 1.0, 2.0)
    assert " " not in text
    assert json.loads(text) == {"k": "c", "f": 3, "x": 1.0, "y": 2.0}
