"""--display for real: OpenCV's GUI build (`make install-gui`) under Xvfb, both peers."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from loopback import REPO, finish, free_port, peer, wait_for_line
from machine_tools import require

GUI_PYTHON = Path(os.environ.get("REBOUND_GUI_PYTHON", REPO / ".venv-gui" / "bin" / "python"))
SCREEN = (1400, 1000)


def gui_problem() -> str | None:
    if not GUI_PYTHON.exists():
        return f"no GUI build of OpenCV ({GUI_PYTHON} missing: make install-gui)"
    probe = subprocess.run(
        [str(GUI_PYTHON), "-c", "from peers.display import gui_available as g; print(g())"],
        capture_output=True, text=True, cwd=REPO, timeout=120,
    )  # fmt: skip
    if probe.stdout.strip() != "True":
        return f"{GUI_PYTHON} has no GUI build of OpenCV (make install-gui): {probe.stderr[-200:]}"
    if shutil.which("Xvfb") is None:
        return "Xvfb is not installed (make test-tools)"
    return None


@pytest.fixture
def x_display() -> Iterator[str]:
    require(gui_problem())
    read, write = os.pipe()
    xvfb = subprocess.Popen(
        ["Xvfb", "-displayfd", str(write), "-screen", "0", f"{SCREEN[0]}x{SCREEN[1]}x24",
         "-nolisten", "tcp"],
        pass_fds=(write,), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    os.close(write)
    with os.fdopen(read) as announced:
        number = announced.readline().strip()
    try:
        assert number, "Xvfb did not start"
        yield f":{number}"
    finally:
        xvfb.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            xvfb.wait(10)
        if xvfb.poll() is None:
            xvfb.kill()
            xvfb.wait()


def near(image: np.ndarray, rgb: tuple[int, int, int], tolerance: int) -> int:
    distance = np.abs(image.astype(np.int16) - np.array(rgb, dtype=np.int16)).max(axis=2)
    return int((distance <= tolerance).sum())


def problems(shot: np.ndarray) -> list[str]:
    """What the screen does not show yet: the server's window is at x < 660, the client's right."""
    server_window, client_window = shot[:, :660], shot[:, 680:1340]
    checks = {
        "server: no green truth circle": near(server_window, (0, 200, 0), 60) > 50,
        "server: no red estimate": near(server_window, (255, 0, 0), 60) > 50,
        "server: no ball": near(server_window, (255, 255, 255), 30) > 200,
        "client: no red detection": near(client_window, (255, 0, 0), 60) > 30,
        "client: no ball": near(client_window, (255, 255, 255), 30) > 200,
        "client: a truth circle, but the client knows no truth": (
            near(client_window, (0, 200, 0), 60) < 10
        ),
    }
    return [what for what, ok in checks.items() if not ok]


def windows(x_display: str) -> str:
    """The X server's top-level windows with their geometry (for a failure's message)."""
    if shutil.which("xwininfo") is None:
        return "(xwininfo, from x11-utils, is not installed)"
    tree = subprocess.run(
        ["xwininfo", "-root", "-tree", "-display", x_display],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    return tree.stdout[-1500:] or tree.stderr[-300:]


def test_both_windows_show_the_ball_with_their_overlays(
    x_display: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from PIL import ImageGrab

    monkeypatch.setenv("DISPLAY", x_display)
    port = str(free_port())
    common = ["--signaling-port", port, "--display"]
    server = peer(
        "server", *common, "--duration", "15", command=[str(GUI_PYTHON), "-m", "peers.server"]
    )
    client = peer("client", *common, command=[str(GUI_PYTHON), "-m", "peers.client"])
    try:
        wait_for_line(server.stdout, "sent    ", timeout=90)  # type: ignore[arg-type]
        time.sleep(3)
        deadline = time.monotonic() + 8  # a loaded machine may map or paint a window late
        while True:
            shot = np.asarray(ImageGrab.grab(xdisplay=x_display).convert("RGB"))
            missing = problems(shot)
            if not missing or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        placed = windows(x_display) if missing else ""
    finally:
        done_server, done_client = finish(server, 90), finish(client, 90)
    assert done_server.code == done_client.code == 0, done_server.stderr + done_client.stderr
    assert "--display:" not in done_server.stderr + done_client.stderr  # a window, no excuse
    assert shot.shape[:2] == (SCREEN[1], SCREEN[0])
    assert missing == [], f"{missing}; windows: {placed}"
