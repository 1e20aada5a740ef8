"""Frame identity carried in the pixels: a 32-bit barcode in the top band of every frame.

Layout (rows 0..MARKER_ROWS-1 of the frame, the ball never enters them): 32 equal-width
blocks, most significant bit first; a white block is 1, black is 0. The 32 bits are a 24-bit
frame index followed by the low 8 bits of zlib.crc32 of that index, so a block mangled by
the codec is detected instead of misattributing a coordinate to the wrong frame. Because the
identity travels with the pixels, it survives dropped, delayed and reordered frames and
needs no knowledge of RTP timestamps (whose origin aiortc randomises and the receiver
re-bases on the first packet it happens to see).
"""

from __future__ import annotations

import zlib

import numpy as np
import numpy.typing as npt

from peers.config import MARKER_BAND_PX, MIN_WIDTH

BITS = 32
INDEX_BITS = 24
MAX_INDEX = (1 << INDEX_BITS) - 1
FLUSH_INDEX = MAX_INDEX
"""Reserved id of the blank frame sent after the last one: a lost last packet of the last real
frame shows as a gap only when a later packet arrives, and only then can it be re-requested."""
MARKER_ROWS = 12
"""Rows 0..11 hold the blocks; rows 12..15 stay background as a guard before the arena."""
assert MARKER_ROWS < MARKER_BAND_PX
assert MIN_WIDTH // BITS >= 4

_SHIFTS = np.arange(BITS - 1, -1, -1, dtype=np.uint64)


def _checksum(index: int) -> int:
    return zlib.crc32(index.to_bytes(3, "big")) & 0xFF


def encode(index: int) -> int:
    """The 32-bit word stamped for frame `index` (index wraps modulo 2**24)."""
    index &= MAX_INDEX
    return (index << 8) | _checksum(index)


def decode(word: int) -> int | None:
    """The frame index in a 32-bit word, or None when its checksum does not match."""
    index = word >> 8
    return index if (word & 0xFF) == _checksum(index) else None


def block_width(width: int) -> int:
    """Width in px of one bit's block for a frame `width` px wide."""
    return width // BITS


def stamp(frame: npt.NDArray[np.uint8], index: int, *, on: int = 255, off: int = 0) -> None:
    """Write frame `index` into the marker band of `frame` (BGR or single-channel), in place;
    1 bits get level `on`, 0 bits `off`."""
    bw = block_width(frame.shape[1])
    band = frame[:MARKER_ROWS]
    word = encode(index)
    for bit in range(BITS):
        one = (word >> (BITS - 1 - bit)) & 1
        band[:, bit * bw : (bit + 1) * bw] = on if one else off


def read(luma: npt.NDArray[np.uint8]) -> int | None:
    """Frame index stamped in a single-channel frame, or None if unreadable.

    Each bit is the mean of its block's central region (away from block edges the codec
    blurs), thresholded at mid-grey; works for full- and limited-range luma alike.
    """
    height, width = luma.shape[:2]
    bw = block_width(width)
    if bw < 4 or height < MARKER_BAND_PX:
        return None
    inset = bw // 4
    rows = luma[3 : MARKER_ROWS - 3, : bw * BITS].astype(np.float32)
    blocks = rows.reshape(rows.shape[0], BITS, bw)[:, :, inset : bw - inset]
    bits = blocks.mean(axis=(0, 2)) > 128.0
    word = int((bits.astype(np.uint64) << _SHIFTS).sum())
    return decode(word)
