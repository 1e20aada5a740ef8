"""`--display`: an OpenCV window on each peer, with OpenCV's GUI build (`make install-gui`).

The window must exist before aiortc (and PyAV's bundled FFmpeg) is imported: opened after
them, the first `namedWindow` hangs (Qt and FFmpeg libraries clash). So `peers.startup`,
the first module both peers import, calls `open_early` when `--display` is on the command
line, and the peer later draws into that same window from its event loop's thread (Qt's
windows belong to the thread that created them). With the default headless build there is
no window: the peer says so in one line and runs as usual.

A shown frame costs the loop `imshow` plus `waitKey(1)` (about 1-2 ms at 640x480); nothing
happens per frame without `--display`.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

TITLES = {"peers.server": "rebound server", "peers.client": "rebound client"}
PLACES = {"rebound server": (0, 0), "rebound client": (680, 0)}
"""Where each window opens (x, y): side by side for a 640x480 session."""
FONT_DIRS = ("/usr/share/fonts/truetype/dejavu", "/usr/share/fonts/truetype")

_opened: dict[str, bool] = {}


def gui_available() -> bool:
    """True when this OpenCV build can open windows (opencv-python-headless cannot)."""
    import cv2

    for line in cv2.getBuildInformation().splitlines():
        if line.strip().startswith("GUI:"):
            return line.split(":", 1)[1].strip().upper() != "NONE"
    return False


def open_early(title: str) -> bool:
    """Open the window `title` now (before aiortc is imported); False without a GUI build
    or a display to open it on."""
    if title in _opened:
        return _opened[title]
    import cv2

    ok = gui_available() and bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))
    if ok:
        fonts = next((d for d in FONT_DIRS if Path(d).is_dir()), None)
        if fonts is not None:
            os.environ.setdefault("QT_QPA_FONTDIR", fonts)  # Qt ships none in the wheel
        try:
            cv2.namedWindow(title, cv2.WINDOW_AUTOSIZE | cv2.WINDOW_GUI_NORMAL)
            cv2.moveWindow(title, *PLACES.get(title, (0, 0)))
            cv2.waitKey(1)
        except cv2.error:
            ok = False
    _opened[title] = ok
    return ok


def open_for_program(module: str, argv: list[str]) -> None:
    """`peers.startup`'s hook: open the peer's window early when `--display` is asked for."""
    if "--display" in argv and module in TITLES:
        open_early(TITLES[module])


def unavailable_reason() -> str:
    """Why --display shows nothing here (for the one-line message)."""
    if not gui_available():
        return "this OpenCV build has no GUI (headless; `make install-gui` builds one)"
    return "no display to open a window on (DISPLAY is not set)"


class Window:
    """The peer's window; `show` a BGR frame from the event loop's thread."""

    def __init__(self, title: str) -> None:
        self.title = title
        self.shown = 0

    @classmethod
    def for_program(cls, module: str) -> Window | None:
        """The window opened early for `module`, or None (headless build, no display)."""
        title = TITLES[module]
        if title not in _opened:  # imported as a library: open it now if we can
            open_early(title)
        return cls(title) if _opened.get(title) else None

    def show(self, frame: Any) -> None:
        """Draw `frame` (H x W x 3 BGR) and let the window process its events."""
        import cv2

        cv2.imshow(self.title, frame)
        cv2.waitKey(1)
        self.shown += 1

    def close(self) -> None:
        """Close the window."""
        import cv2

        cv2.destroyWindow(self.title)
        cv2.waitKey(1)


def main_module() -> str:
    """The running peer's module name (`peers.server`, `peers.client`) or ''."""
    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    if spec is not None and spec.name in TITLES:
        return str(spec.name)
    script = os.path.basename(sys.argv[0]) if sys.argv else ""
    return {"rebound-server": "peers.server", "rebound-client": "peers.client"}.get(script, "")
