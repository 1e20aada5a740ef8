"""A peer with one behaviour broken on purpose, for failure tests.

python peer_variants.py VARIANT server|client [peer args]

- `no-datachannel`: the peer's SCTP ignores data-channel open requests and acks, so the data
  channel never opens although ICE and DTLS connect.
"""

from __future__ import annotations

import sys
from typing import Any

from aiortc.rtcsctptransport import WEBRTC_DCEP, RTCSctpTransport


def no_datachannel() -> None:
    """Drop every DCEP message before aiortc sees it (patched before peers import aiortc)."""
    original = RTCSctpTransport._data_channel_receive

    async def receive(self: Any, stream_id: int, pp_id: int, data: bytes) -> None:
        if pp_id != WEBRTC_DCEP:
            await original(self, stream_id, pp_id, data)

    RTCSctpTransport._data_channel_receive = receive  # type: ignore[method-assign]


VARIANTS = {"no-datachannel": no_datachannel}

if __name__ == "__main__":
    VARIANTS[sys.argv[1]]()
    if sys.argv[2] == "server":
        from peers.server import main
    else:
        from peers.client import main
    sys.exit(main(sys.argv[3:]))
