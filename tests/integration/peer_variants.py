"""A peer with one behaviour broken on purpose, for failure tests.

python peer_variants.py VARIANT server|client [peer args]

- `no-datachannel`: the peer's SCTP ignores data-channel open requests and acks, so the data
  channel never opens although ICE and DTLS connect.
- `spoilt-frames` (server): every frame i with i % 10 == 5 has no ball, and every frame with
  i % 10 == 7 a marker the client cannot read.
- `slow-process-a` (client): process_a takes 60 ms per frame, so the client drops frames.
  process_a is a spawned process that re-imports this script (as `__mp_main__`), so the
  patch is applied at import, from an environment variable.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any

from aiortc.rtcsctptransport import WEBRTC_DCEP, RTCSctpTransport


def no_datachannel() -> None:
    """Drop every DCEP message before aiortc sees it (patched before peers import aiortc)."""
    original = RTCSctpTransport._data_channel_receive

    async def receive(self: Any, stream_id: int, pp_id: int, data: bytes) -> None:
        if pp_id != WEBRTC_DCEP:
            await original(self, stream_id, pp_id, data)

    RTCSctpTransport._data_channel_receive = receive  # type: ignore[method-assign]


def spoilt_frames() -> None:
    """No ball in frames 5, 15, 25...; an unreadable marker in frames 7, 17, 27..."""
    from peers import render

    original = render.draw_luma

    def draw_luma(position: Any, radius: float, *, frame_index: int, **kwargs: Any) -> Any:
        if frame_index % 10 == 5:
            position = None
        out = original(position, radius, frame_index=frame_index, **kwargs)
        if frame_index % 10 == 7:
            out[: render.marker.MARKER_ROWS] = render.LUMA_BLACK  # word 0 fails the CRC
        return out

    render.draw_luma = draw_luma  # type: ignore[assignment]


SLOW_ENV = "REBOUND_TEST_SLOW_PROCESS_A_S"


def slow_process_a() -> None:
    """Ask process_a (which imports this script again) to take 60 ms per frame."""
    os.environ[SLOW_ENV] = "0.06"


if os.environ.get(SLOW_ENV) and __name__ == "__mp_main__":  # inside process_a
    import peers.tracker

    _process_frame = peers.tracker.process_frame

    def _slow_process_frame(item: Any) -> Any:
        time.sleep(float(os.environ[SLOW_ENV]))
        return _process_frame(item)

    peers.tracker.process_frame = _slow_process_frame  # type: ignore[assignment]


VARIANTS = {
    "no-datachannel": no_datachannel,
    "spoilt-frames": spoilt_frames,
    "slow-process-a": slow_process_a,
}

if __name__ == "__main__":
    VARIANTS[sys.argv[1]]()
    if sys.argv[2] == "server":
        from peers.server import main
    else:
        from peers.client import main
    sys.exit(main(sys.argv[3:]))
