"""A quiet Ctrl-C while a peer program starts, before its event loop takes SIGINT over.

`python -m peers.server` spends its first second importing aiortc, PyAV and OpenCV; a Ctrl-C
then would end in a KeyboardInterrupt traceback, or, raised inside a library's import that
catches everything, be swallowed, so that the peer went on to wait for its partner. The
peers' modules import this module first (it imports nothing heavy); when a peer runs as a
program (`python -m peers.server`, `python -m peers.client`, `rebound-server`,
`rebound-client`), SIGINT ends it at once with a silent exit 130 (nothing needs cleaning up
yet: process_a dies with its client), and an excepthook does the same for a
KeyboardInterrupt raised anyway. Imported as a library (tests, the operator, a REPL) it
changes nothing. Once the loop runs, `peers.cli.run` handles SIGINT.
With `--display` it also opens the peer's window here, before anything imports aiortc (see
peers.display).
"""

from __future__ import annotations

import os
import signal
import sys
from types import FrameType, TracebackType

EXIT_INTERRUPTED = 130
PROGRAMS = frozenset({"peers.server", "peers.client"})
SCRIPTS = frozenset({"rebound-server", "rebound-client"})

_previous_hook = sys.excepthook


def running_as_peer() -> bool:
    """True when the interpreter is running one of the peer programs."""
    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    if spec is not None and spec.name in PROGRAMS:
        return True
    return bool(sys.argv) and os.path.basename(sys.argv[0]) in SCRIPTS


def _quiet_interrupt(
    kind: type[BaseException], value: BaseException, traceback: TracebackType | None
) -> None:
    if issubclass(kind, KeyboardInterrupt):
        os._exit(EXIT_INTERRUPTED)  # nothing to clean up yet; no traceback, no atexit noise
    _previous_hook(kind, value, traceback)


def _exit_interrupted(signum: int, frame: FrameType | None) -> None:
    os._exit(EXIT_INTERRUPTED)


if running_as_peer():
    signal.signal(signal.SIGINT, _exit_interrupted)
    sys.excepthook = _quiet_interrupt
    if "--display" in sys.argv[1:]:
        # The window must exist before aiortc is imported (peers.display says why).
        from peers import display

        display.open_for_program(display.main_module(), sys.argv[1:])
