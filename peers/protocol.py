"""Data-channel messages between the peers, and the strict decoder for them.

Wire format: every data-channel message is one compact JSON object sent as a *string*
message of at most MAX_MESSAGE_BYTES bytes of UTF-8; `k` names its kind. Both peers
advertise MAX_MESSAGE_BYTES as their SCTP `max-message-size` (see `peers.sctp_guard`), and
refuse anything larger.

Kinds (exactly these keys, nothing more):
- client -> server `{"k":"c","f":F,"x":X,"y":Y}`: the ball centre (X, Y) the client measured
  on frame F (`0 <= F < marker.FLUSH_INDEX`; `abs(X), abs(Y) <= MAX_COORDINATE`).
- client -> server
  `{"k":"s","received":n,"dropped":n,"unreadable":n,"missed":n,"incomplete":n,"final":b}`:
  the client's counters (each `0 <= n <= MAX_COUNT`), every second, and once with
  `final: true` after its last coordinate.
- server -> client `{"k":"end","frames":n}`: the server has sent its last frame (n in all)
  and asks for the final counters.
- both ways `{"k":"hb"}`: heartbeat, every HEARTBEAT_INTERVAL_S from the moment the channel
  is open until the peer closes it.
- both ways `{"k":"bye"}`: acknowledges the end of the session (handshake below).
- both ways `{"k":"abort","why":W}`: the sender is failing (W is a short `[a-z_]` token,
  e.g. `process_a_died`); the receiver ends the session with exit code 1.
- client -> server `{"k":"o","f":F,"o":O}`: frame F brought no coordinate because of O, one
  of FRAME_OUTCOMES (`dropped` before detection, `unreadable` marker, `no_ball`).
- client -> server `{"k":"img","f":F,"x0":X,"y0":Y,"s":S,"i":I,"n":N,"d":D}`: chunk I of N
  (`I < N <= MAX_SAMPLE_CHUNKS`) of a PNG crop of received frame F whose pixel (0, 0) is frame
  pixel (X, Y) (integers, `0 <= X, Y <= MAX_COORDINATE`), each crop pixel `S` frame pixels
  wide (`1 <= S <= 64`); D is base64 text of at most MAX_SAMPLE_CHUNK_CHARS characters. The
  chunks of one crop are sent in order, back to back.

End of session (both peers exit 0 only when it completes):
1. server -> `end` when a limit is reached or the server is stopped (SIGINT/SIGTERM). A client
   stopped by SIGINT/SIGTERM skips this step and starts at 2.
2. client -> final `s`: sent after the client has stopped taking frames and process_a has
   drained; the client sends no coordinate after it (the server ignores any, `after_final`).
3. server -> `bye`: the final counters arrived; the server's session is complete (exit 0).
   The server waits at most END_GRACE_S for step 2, else it exits 1.
4. client -> `bye`: the client got step 3 within END_GRACE_S (exit 0; else exit 1). The
   server waits at most BYE_WAIT_S for it (or for the channel to close) before closing, so
   that its own `bye` is not cut off by the close.

Liveness: any message counts as a sign of life. A peer that hears nothing for SILENCE_LIMIT_S
ends the session with exit 1 ("went silent"), long before ICE consent freshness (~30 s) would.

Anything else is rejected with a `ProtocolError` whose `reason` is a short counter name; the
receiver counts reasons and ignores the message. Numbers are bounded while parsing (at most
MAX_NUMBER_CHARS characters, no `-0` integer, no NaN/Infinity), and duplicate keys are refused.
"""

from __future__ import annotations

import base64
import json
import math
import re
from dataclasses import dataclass
from typing import Any

from peers.marker import FLUSH_INDEX

MAX_MESSAGE_BYTES = 512
"""Largest message either peer sends or accepts (advertised as SCTP max-message-size)."""
MAX_COORDINATE = 1e6
MAX_COUNT = 2**31 - 1
"""Upper bound of every counter and frame count on the wire."""
MAX_NUMBER_CHARS = 32
"""Longest number literal accepted (a 400-digit integer is refused before it is built)."""
HEARTBEAT_INTERVAL_S = 0.5
SILENCE_LIMIT_S = 4.0
"""No message at all for this long: the other peer is gone (detected within ~4.5 s)."""
END_GRACE_S = 5.0
"""How long a peer waits for the other's next step of the end-of-session handshake."""
BYE_WAIT_S = END_GRACE_S
"""How long the server keeps the channel open for the client's closing `bye` (its own `bye`
may need SCTP retransmissions; the client's `bye` ends the wait at once)."""

FRAME_OUTCOMES = ("dropped", "unreadable", "no_ball")
MAX_SAMPLE_CHUNKS = 32
MAX_SAMPLE_CHUNK_CHARS = 384
MAX_SAMPLE_SCALE = 64.0

_WHY = re.compile(r"[a-z_]{1,32}")
_BASE64 = re.compile(r"[A-Za-z0-9+/]*={0,2}")


class ProtocolError(ValueError):
    """A message that must be ignored; `reason` is the counter it is filed under."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


@dataclass(frozen=True)
class Coordinate:
    """The ball centre the client measured on frame `frame`."""

    frame: int
    x: float
    y: float


@dataclass(frozen=True)
class ClientStats:
    """The client's counters: frames received (decoded), dropped before detection, with an
    unreadable marker, without a ball, and given up by the receiver (never decoded)."""

    received: int
    dropped: int
    unreadable: int
    missed: int
    incomplete: int = 0
    final: bool = False


@dataclass(frozen=True)
class End:
    """The server has sent its last frame; `frames` frames were sent in all."""

    frames: int


@dataclass(frozen=True)
class Heartbeat:
    """A sign of life."""


@dataclass(frozen=True)
class Bye:
    """Acknowledges the end of the session."""


@dataclass(frozen=True)
class Abort:
    """The sender is failing; `why` is a short token naming the cause."""

    why: str


@dataclass(frozen=True)
class FrameOutcome:
    """Why frame `frame` brought no coordinate (one of FRAME_OUTCOMES)."""

    frame: int
    outcome: str


@dataclass(frozen=True)
class SampleChunk:
    """One piece of a PNG crop of a received frame (see the module docstring)."""

    frame: int
    x0: int
    y0: int
    scale: float
    index: int
    count: int
    data: str


Message = Coordinate | ClientStats | End | Heartbeat | Bye | Abort | FrameOutcome | SampleChunk
_STATS_FIELDS = ("received", "dropped", "unreadable", "missed", "incomplete", "final")


def _dump(obj: dict[str, Any]) -> str:
    return json.dumps(obj, separators=(",", ":"), allow_nan=False)


def encode_coordinate(frame: int, x: float, y: float) -> str:
    """Wire form of a coordinate."""
    return _dump({"k": "c", "f": frame, "x": round(x, 4), "y": round(y, 4)})


def encode_stats(stats: ClientStats) -> str:
    """Wire form of the client's counters."""
    return _dump(
        {
            "k": "s",
            "received": stats.received,
            "dropped": stats.dropped,
            "unreadable": stats.unreadable,
            "missed": stats.missed,
            "incomplete": stats.incomplete,
            "final": stats.final,
        }
    )


def encode_end(frames: int) -> str:
    """Wire form of the end-of-stream notice."""
    return _dump({"k": "end", "frames": frames})


HEARTBEAT = _dump({"k": "hb"})
BYE = _dump({"k": "bye"})


def encode_abort(why: str) -> str:
    """Wire form of an abort notice; `why` must be a short `[a-z_]` token."""
    if not _WHY.fullmatch(why):
        raise ValueError(f"abort reason {why!r} is not a short [a-z_] token")
    return _dump({"k": "abort", "why": why})


def encode_outcome(frame: int, outcome: str) -> str:
    """Wire form of a frame's outcome."""
    if outcome not in FRAME_OUTCOMES:
        raise ValueError(f"{outcome!r} is not one of {FRAME_OUTCOMES}")
    return _dump({"k": "o", "f": frame, "o": outcome})


def encode_sample(frame: int, x0: int, y0: int, scale: float, png: bytes) -> list[str]:
    """Wire form of a PNG crop: its chunks in order; [] when it needs too many."""
    text = base64.b64encode(png).decode("ascii")
    pieces = [
        text[i : i + MAX_SAMPLE_CHUNK_CHARS] for i in range(0, len(text), MAX_SAMPLE_CHUNK_CHARS)
    ]
    if not pieces or len(pieces) > MAX_SAMPLE_CHUNKS:
        return []
    return [
        _dump({"k": "img", "f": frame, "x0": x0, "y0": y0, "s": round(scale, 4), "i": i,
               "n": len(pieces), "d": piece})
        for i, piece in enumerate(pieces)
    ]  # fmt: skip


def _reject_constant(name: str) -> float:
    raise ProtocolError("not_finite", name)


def _parse_int(text: str) -> int:
    if len(text) > MAX_NUMBER_CHARS:
        raise ProtocolError("bad_number", f"{len(text)} digits")
    if text == "-0":
        raise ProtocolError("bad_number", "-0")
    return int(text)


def _parse_float(text: str) -> float:
    if len(text) > MAX_NUMBER_CHARS:
        raise ProtocolError("bad_number", f"{len(text)} characters")
    return float(text)


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        raise ProtocolError("duplicate_key")
    return obj


def _count(obj: dict[str, Any], key: str) -> int:
    value = obj.get(key)
    if type(value) is not int or not 0 <= value <= MAX_COUNT:
        raise ProtocolError("bad_field", key)
    return value


def _fields(obj: dict[str, Any], *keys: str) -> None:
    if set(obj) != {"k", *keys}:
        raise ProtocolError("bad_fields", ",".join(sorted(map(str, obj)))[:60])


def _coordinate(obj: dict[str, Any]) -> Coordinate:
    _fields(obj, "f", "x", "y")
    frame, x, y = obj["f"], obj["x"], obj["y"]
    if type(frame) is not int or not 0 <= frame < FLUSH_INDEX:
        raise ProtocolError("bad_frame", repr(frame)[:32])
    for value in (x, y):
        if type(value) not in (int, float):
            raise ProtocolError("bad_type", type(value).__name__)
        if not math.isfinite(value) or abs(value) > MAX_COORDINATE:
            raise ProtocolError("not_finite", repr(value)[:32])
    return Coordinate(frame, float(x), float(y))


def _stats(obj: dict[str, Any]) -> ClientStats:
    _fields(obj, *_STATS_FIELDS)
    if type(obj["final"]) is not bool:
        raise ProtocolError("bad_field", "final")
    received, dropped, unreadable, missed, incomplete = (_count(obj, k) for k in _STATS_FIELDS[:-1])
    return ClientStats(received, dropped, unreadable, missed, incomplete, final=obj["final"])


def _frame(obj: dict[str, Any]) -> int:
    frame = obj["f"]
    if type(frame) is not int or not 0 <= frame < FLUSH_INDEX:
        raise ProtocolError("bad_frame", repr(frame)[:32])
    return frame


def _outcome(obj: dict[str, Any]) -> FrameOutcome:
    _fields(obj, "f", "o")
    if obj["o"] not in FRAME_OUTCOMES:
        raise ProtocolError("bad_field", "o")
    return FrameOutcome(_frame(obj), obj["o"])


def _sample_chunk(obj: dict[str, Any]) -> SampleChunk:
    _fields(obj, "f", "x0", "y0", "s", "i", "n", "d")
    frame = _frame(obj)
    x0, y0, index, count, scale, data = (obj[k] for k in ("x0", "y0", "i", "n", "s", "d"))
    for key, value in (("x0", x0), ("y0", y0)):
        if type(value) is not int or not 0 <= value <= MAX_COORDINATE:
            raise ProtocolError("bad_field", key)
    if type(count) is not int or not 1 <= count <= MAX_SAMPLE_CHUNKS:
        raise ProtocolError("bad_field", "n")
    if type(index) is not int or not 0 <= index < count:
        raise ProtocolError("bad_field", "i")
    if type(scale) not in (int, float) or not 1.0 <= scale <= MAX_SAMPLE_SCALE:
        raise ProtocolError("bad_field", "s")
    if not isinstance(data, str) or not 0 < len(data) <= MAX_SAMPLE_CHUNK_CHARS:
        raise ProtocolError("bad_field", "d")
    if not _BASE64.fullmatch(data):
        raise ProtocolError("bad_field", "d")
    return SampleChunk(frame, x0, y0, float(scale), index, count, data)


def _abort(obj: dict[str, Any]) -> Abort:
    _fields(obj, "why")
    why = obj["why"]
    if not isinstance(why, str) or not _WHY.fullmatch(why):
        raise ProtocolError("bad_field", "why")
    return Abort(why)


def _text(message: object) -> str:
    """The message as text, or ProtocolError (binary, oversize, not UTF-8, not a string)."""
    if isinstance(message, bytes):
        if len(message) > MAX_MESSAGE_BYTES:
            raise ProtocolError("too_large", str(len(message)))
        try:
            message.decode("utf-8")
        except UnicodeDecodeError:
            raise ProtocolError("not_utf8") from None
        raise ProtocolError("binary")
    if not isinstance(message, str):
        raise ProtocolError("bad_type", type(message).__name__)
    if len(message) > MAX_MESSAGE_BYTES or len(message.encode("utf-8")) > MAX_MESSAGE_BYTES:
        raise ProtocolError("too_large", str(len(message)))
    return message


def decode(message: object) -> Message:
    """Parse one data-channel message; raise ProtocolError for anything malformed."""
    text = _text(message)
    try:
        obj = json.loads(
            text,
            parse_constant=_reject_constant,
            parse_int=_parse_int,
            parse_float=_parse_float,
            object_pairs_hook=_unique_keys,
        )
    except ProtocolError:
        raise
    except (ValueError, RecursionError) as exc:
        raise ProtocolError("not_json", str(exc)[:60]) from None
    if not isinstance(obj, dict):
        raise ProtocolError("not_object", type(obj).__name__)
    kind = obj.get("k")
    if kind == "c":
        return _coordinate(obj)
    if kind == "s":
        return _stats(obj)
    if kind == "end":
        _fields(obj, "frames")
        return End(_count(obj, "frames"))
    if kind == "hb":
        _fields(obj)
        return Heartbeat()
    if kind == "bye":
        _fields(obj)
        return Bye()
    if kind == "abort":
        return _abort(obj)
    if kind == "o":
        return _outcome(obj)
    if kind == "img":
        return _sample_chunk(obj)
    raise ProtocolError("unknown_kind", repr(kind)[:32])
