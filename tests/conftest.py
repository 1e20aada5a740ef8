"""Suite-wide guards."""

import signal
from collections.abc import Iterator

import psutil
import pytest

if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    # Started in the background by a non-interactive shell (`make test &`, some CI runners):
    # SIGINT is ignored, and an ignored signal stays ignored across exec. The peers the tests
    # start must see Ctrl-C as they would from a terminal.
    signal.signal(signal.SIGINT, signal.default_int_handler)


def _process_a_children() -> set[int]:
    me = psutil.Process()
    found = set()
    for child in me.children(recursive=True):
        try:
            if "spawn_main" in " ".join(child.cmdline()) and child.status() != "zombie":
                found.add(child.pid)
        except psutil.Error:
            continue
    return found


@pytest.fixture(autouse=True)
def no_leaked_process_a() -> Iterator[None]:
    """Every test must leave no multiprocessing child (process_a) running."""
    before = _process_a_children()
    yield
    leaked = _process_a_children() - before
    for pid in leaked:
        psutil.Process(pid).kill()
    assert not leaked, f"test leaked multiprocessing children: {sorted(leaked)}"
