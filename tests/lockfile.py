"""Read the pinned dependency locks in requirements/ (written by `make lock`)."""

from __future__ import annotations

import re
from pathlib import Path

LOCK_DIR = Path(__file__).resolve().parents[1] / "requirements"
_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)", re.MULTILINE)


def canonical(name: str) -> str:
    """A distribution name as PEP 503 compares them (case, `-`, `_` and `.` alike)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def locked_versions(extra: str) -> dict[str, str]:
    """Canonical name → pinned version in requirements/<extra>.txt."""
    text = (LOCK_DIR / f"{extra}.txt").read_text()
    return {canonical(name): version for name, version in _PIN.findall(text)}
