"""`make demo`: a ~10 s session with both peers on 127.0.0.1, printing the summary."""

from __future__ import annotations

import sys

from bench.sessions import run_session


def main() -> int:
    """Run the demo session with the server's live output on this terminal."""
    print("Rebound demo: server and client on 127.0.0.1, 640x480 at 30 fps for 10 s\n", flush=True)
    try:
        run_session(["--duration", "10"], show_output=True, timeout=120)
    except RuntimeError as exc:
        print(f"demo failed: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
