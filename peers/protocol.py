"""Data-channel messages between the peers, and the strict decoder for them.

Wire format: one compact JSON object per message, `k` naming the kind.
- client -> server `{"k":"c","f":<frame>,"x":<float>,"y":<float>}`: ball seen in frame f.
- client -> server `{"k":"s","received":n,"dropped":n,"unreadable":n,"missed":n,"final":b}`:
  the client's counters; `final` once, after its last coordinate.
- server -> client `{"k":"end","frames":n}`: n frames were sent, no more will come.
Anything else is rejected with a `ProtocolError` whose `reason` is a short counter name; the
server counts reasons and ignores the message.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

from peers.marker import FLUSH_INDEX

MAX_MESSAGE_BYTES = 512
MAX_COORDINATE = 1e6


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
    """The client's counters: frames received, dropped before detection, unreadable, missed."""

    received: int
    dropped: int
    unreadable: int
    missed: int
    final: bool = False


@dataclass(frozen=True)
class End:
    """The server has sent its last frame; `frames` frames were sent in all."""

    frames: int


Message = Coordinate | ClientStats | End
_STATS_FIELDS = ("received", "dropped", "unreadable", "missed", "final")


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
            "final": stats.final,
        }
    )


def encode_end(frames: int) -> str:
    """Wire form of the end-of-stream notice."""
    return _dump({"k": "end", "frames": frames})


def _reject_constant(name: str) -> float:
    raise ProtocolError("not_finite", name)


def _count(obj: dict[str, Any], key: str) -> int:
    value = obj.get(key)
    if type(value) is not int or value < 0:
        raise ProtocolError("bad_field", key)
    return value


def _coordinate(obj: dict[str, Any]) -> Coordinate:
    if set(obj) != {"k", "f", "x", "y"}:
        raise ProtocolError("bad_fields", ",".join(sorted(map(str, obj))))
    frame, x, y = obj["f"], obj["x"], obj["y"]
    if type(frame) is not int or not 0 <= frame < FLUSH_INDEX:
        raise ProtocolError("bad_frame", repr(frame)[:32])
    for value in (x, y):
        if type(value) not in (int, float):
            raise ProtocolError("bad_type", type(value).__name__)
        if not math.isfinite(value) or abs(value) > MAX_COORDINATE:
            raise ProtocolError("not_finite", repr(value)[:32])
    return Coordinate(frame, float(x), float(y))


def decode(message: object) -> Message:
    """Parse one data-channel message; raise ProtocolError for anything malformed."""
    if isinstance(message, bytes):
        raise ProtocolError("binary")
    if not isinstance(message, str):
        raise ProtocolError("bad_type", type(message).__name__)
    if len(message) > MAX_MESSAGE_BYTES:
        raise ProtocolError("too_large", str(len(message)))
    try:
        obj = json.loads(message, parse_constant=_reject_constant)
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
        if set(obj) != {"k", *_STATS_FIELDS} or type(obj["final"]) is not bool:
            raise ProtocolError("bad_fields", ",".join(sorted(map(str, obj)))[:60])
        received, dropped, unreadable, missed = (_count(obj, k) for k in _STATS_FIELDS[:-1])
        return ClientStats(received, dropped, unreadable, missed, final=obj["final"])
    if kind == "end":
        return End(_count(obj, "frames"))
    raise ProtocolError("unknown_kind", repr(kind)[:32])
