"""Suite-wide guards."""

from collections.abc import Iterator

import psutil
import pytest


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
