"""Tools a test needs from the machine (Chromium, Xvfb, a GUI OpenCV build, docker compose).

Outside CI a test that lacks one skips with the reason and the command that installs it;
under `CI=true` the project installs them (`make test-tools`, `make install-gui`), so a
missing one fails the test instead of skipping it silently.
"""

from __future__ import annotations

import os

import pytest


def in_ci() -> bool:
    """True under CI (`CI=true`), where every tool the project installs must be present."""
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def require(problem: str | None) -> None:
    """Skip (or, under CI, fail) the calling test when `problem` names a missing tool."""
    if problem is None:
        return
    if in_ci():
        pytest.fail(f"{problem}; CI must provide it", pytrace=False)
    pytest.skip(problem)
