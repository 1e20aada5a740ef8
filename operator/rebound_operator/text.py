"""Text from untrusted sources (peers, the kubelet, exceptions) made fit for a status."""

from __future__ import annotations

from typing import Any

MAX_DETAIL = 256
"""Characters of any peer- or kubelet-provided text copied into a message."""
MAX_MESSAGE = 1024
"""Characters of any status, condition or event message."""


def one_line(text: Any, limit: int = MAX_DETAIL) -> str:
    """`text` as one printable line of at most `limit` characters (untrusted text in)."""
    raw = text if isinstance(text, str) else str(text)
    raw = raw[: limit * 4]  # bound the work before cleaning
    cleaned = " ".join("".join(c if c.isprintable() else " " for c in raw).split())
    if len(cleaned) <= limit and len(raw) < limit * 4:
        return cleaned
    return cleaned[: max(limit - 1, 0)].rstrip() + "…"


def seconds(value: float) -> str:
    """A duration for messages: `300 s`."""
    return f"{value:g} s"
