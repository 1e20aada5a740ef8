"""A stand-in client for process_a life-cycle tests: start a FrameTracker, then wait to be killed.

python tracker_driver.py MODE: `waiting` (killed while waiting for process_a to be ready),
`ready` (idle with process_a ready), `feeding` (pushing 64 MB frames through the queue, so a
kill lands mid-frame). Prints process_a's pid first, then the phase it reached.
"""

from __future__ import annotations

import asyncio
import sys

from peers.tracker import FrameItem, FrameTracker

BIG = 8000


async def main(mode: str) -> None:
    tracker = FrameTracker(2)
    tracker.start()
    print(tracker.pid, flush=True)
    await tracker.wait_ready(120)
    print("ready", flush=True)
    if mode == "ready":
        await asyncio.sleep(120)
    frame = FrameItem(0, BIG, BIG, BIG, bytes(BIG * BIG))
    print("feeding", flush=True)
    while True:
        tracker.submit(frame)
        await asyncio.sleep(0.001)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
