"""--record on both peers of a real session: the files hold the frames with the overlays."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
from loopback import finish, start_session


def frames(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as container:
        return [f.to_ndarray(format="bgr24") for f in container.decode(video=0)]


def count(image: np.ndarray, bgr: tuple[int, int, int], tolerance: int = 60) -> int:
    distance = np.abs(image.astype(np.int16) - np.array(bgr, dtype=np.int16)).max(axis=2)
    return int((distance <= tolerance).sum())


def test_both_peers_record_what_they_see(tmp_path: Path) -> None:
    server_video, client_video = tmp_path / "server.mp4", tmp_path / "client.mkv"
    session = start_session(
        tmp_path, ["--frames", "90", "--record", str(server_video)], ["--record", str(client_video)]
    )
    server, client = finish(session.server), finish(session.client)
    assert server.code == client.code == 0, server.stderr + client.stderr
    assert f"recording written to {server_video}" in server.stdout
    assert f"recording written to {client_video}" in client.stdout
    sent, received = frames(server_video), frames(client_video)
    assert len(sent) >= 45 and len(received) >= 80  # the server draws at most 30/s of matches
    for image in (sent[len(sent) // 2], received[len(received) // 2]):
        assert image.shape == (480, 640, 3)
        assert count(image, (0, 0, 255)) > 40  # the detection's red cross
        assert count(image, (255, 255, 255), 30) > 200  # the ball
    assert count(sent[len(sent) // 2], (0, 200, 0)) > 40  # the server's truth circle
    assert count(received[len(received) // 2], (0, 200, 0)) < 10  # the client has no truth
