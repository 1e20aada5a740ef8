import contextlib
import json

import pytest

from peers import protocol
from peers.protocol import Abort, Bye, ClientStats, Coordinate, End, Heartbeat, ProtocolError


def test_round_trips() -> None:
    assert protocol.decode(protocol.encode_coordinate(7, 1.23456, 9.87654)) == Coordinate(
        7, 1.2346, 9.8765
    )
    stats = ClientStats(10, 1, 2, 3, 4, final=True)
    assert protocol.decode(protocol.encode_stats(stats)) == stats
    assert protocol.decode(protocol.encode_end(150)) == End(150)
    assert protocol.decode(protocol.HEARTBEAT) == Heartbeat()
    assert protocol.decode(protocol.BYE) == Bye()
    assert protocol.decode(protocol.encode_abort("process_a_died")) == Abort("process_a_died")


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
            '{"k":"s","received":1,"dropped":0,"unreadable":0,"missed":-1,"incomplete":0,"final":false}',
            "bad_field",
        ),
        (
            '{"k":"s","received":1,"dropped":0,"unreadable":0,"missed":0,"incomplete":0,"final":1}',
            "bad_field",
        ),
        ('{"k":"end","frames":"many"}', "bad_field"),
        ('{"k":"zzz"}', "unknown_kind"),
        ("{}", "unknown_kind"),
        # numbers that once crashed the receiver or corrupted a counter (issue 8, item 18)
        ('{"k":"c","f":5,"x":' + "9" * 400 + ',"y":1}', "bad_number"),
        ('{"k":"c","f":5,"x":1,"y":' + "9" * 33 + "}", "bad_number"),
        ('{"k":"c","f":5,"x":1.' + "5" * 40 + ',"y":1}', "bad_number"),
        ('{"k":"c","f":-0,"x":1,"y":1}', "bad_number"),
        ('{"k":"c","f":' + "1" * 40 + ',"x":1,"y":1}', "bad_number"),
        (
            '{"k":"s","received":1,"dropped":'
            + "9" * 401
            + ',"unreadable":0,"missed":0,"incomplete":0,'
            '"final":true}',
            "bad_number",
        ),
        (
            '{"k":"s","received":1,"dropped":2147483648,"unreadable":0,"missed":0,"incomplete":0,"final":true}',
            "bad_field",
        ),
        ('{"k":"end","frames":4294967296}', "bad_field"),
        ('{"k":"c","f":1,"f":2,"x":1,"y":1}', "duplicate_key"),
        ('{"k":"c","k":"s","f":1,"x":1,"y":1}', "duplicate_key"),
        ("\u00e9" * 300, "too_large"),  # 300 characters, 600 bytes of UTF-8
        (b"\xff\xfe{}", "not_utf8"),
        (b"{}", "binary"),
        (b"x" * 100_000, "too_large"),
        ('{"k":"hb","x":1}', "bad_fields"),
        ('{"k":"bye","why":"x"}', "bad_fields"),
        ('{"k":"abort","why":"Robert\'); DROP TABLE"}', "bad_field"),
        ('{"k":"abort","why":"' + "a" * 33 + '"}', "bad_field"),
        ('{"k":"abort"}', "bad_fields"),
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


def test_no_hostile_message_raises_anything_but_protocol_error() -> None:
    """Every number shape a peer can send is refused or bounded, never an OverflowError."""
    for digits in (1, 16, 31, 32, 33, 309, 400, 5000):
        for template in ('{"k":"c","f":5,"x":%s,"y":1}', '{"k":"c","f":%s,"x":1,"y":1}'):
            nines = "9" * digits
            for number in (nines, "-" + nines, nines + "e9", "0." + nines):
                with contextlib.suppress(ProtocolError):
                    protocol.decode(template % number)


def test_encode_abort_refuses_free_text() -> None:
    with pytest.raises(ValueError):
        protocol.encode_abort("process a died")


def test_outcomes_and_sample_chunks_round_trip_within_the_message_bound() -> None:
    for outcome in protocol.FRAME_OUTCOMES:
        message = protocol.encode_outcome(12, outcome)
        assert protocol.decode(message) == protocol.FrameOutcome(12, outcome)
    png = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 30  # ~7.7 kB: 27 chunks
    chunks = protocol.encode_sample(protocol.FLUSH_INDEX - 1, 999_999, 999_999, 63.99, png)
    assert 1 < len(chunks) <= protocol.MAX_SAMPLE_CHUNKS
    assert max(len(c.encode()) for c in chunks) <= protocol.MAX_MESSAGE_BYTES
    decoded = [protocol.decode(c) for c in chunks]
    assert all(isinstance(d, protocol.SampleChunk) for d in decoded)
    assert [d.index for d in decoded] == list(range(len(chunks)))  # type: ignore[union-attr]
    assert protocol.encode_sample(1, 0, 0, 1.0, bytes(20_000)) == []  # too many chunks
    with pytest.raises(ValueError):
        protocol.encode_outcome(1, "lost")


CHUNK = {"k": "img", "f": 3, "x0": 10, "y0": 20, "s": 1.0, "i": 0, "n": 2, "d": "iVBORw0K"}


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"k": "o", "f": 3, "o": "lost"}, "bad_field"),
        ({"k": "o", "f": -1, "o": "dropped"}, "bad_frame"),
        ({"k": "o", "f": 3}, "bad_fields"),
        (CHUNK | {"i": 2}, "bad_field"),
        (CHUNK | {"n": 33}, "bad_field"),
        (CHUNK | {"n": 0, "i": 0}, "bad_field"),
        (CHUNK | {"s": 0.5}, "bad_field"),
        (CHUNK | {"s": 65}, "bad_field"),
        (CHUNK | {"x0": -1}, "bad_field"),
        (CHUNK | {"y0": 1.5}, "bad_field"),
        (CHUNK | {"d": ""}, "bad_field"),
        (CHUNK | {"d": "<script>"}, "bad_field"),
        (CHUNK | {"d": "A" * 385}, "bad_field"),
        (CHUNK | {"extra": 1}, "bad_fields"),
    ],
)
def test_hostile_outcomes_and_chunks_are_refused(fields: dict[str, object], reason: str) -> None:
    with pytest.raises(ProtocolError) as caught:
        protocol.decode(json.dumps(fields, separators=(",", ":")))
    assert caught.value.reason == reason
