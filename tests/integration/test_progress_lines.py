"""Without --verbose both peers say how far they are, once a second."""

from __future__ import annotations

import re
from pathlib import Path

from loopback import finish, start_session

CLIENT_LINE = re.compile(
    r"^received +(\d+) \( *[\d.]+ fps\)  coordinates sent +(\d+)  dropped \d+  "
    r"unreadable \d+  no ball \d+  incomplete \d+$"
)


def test_the_client_prints_a_progress_line_each_second(tmp_path: Path) -> None:
    session = start_session(tmp_path, ["--frames", "120"])
    server, client = finish(session.server), finish(session.client)
    assert server.code == client.code == 0, server.stderr + client.stderr
    received = [int(m[1]) for line in client.stdout.splitlines() if (m := CLIENT_LINE.match(line))]
    assert len(received) >= 2, client.stdout
    assert received == sorted(received) and received[-1] > 0
    assert sum(line.startswith("sent ") for line in server.stdout.splitlines()) >= 2
