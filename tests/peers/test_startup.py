"""peers.startup: a Ctrl-C while a peer program imports its libraries ends it quietly (130)."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap

import pytest

from peers.startup import EXIT_INTERRUPTED

SWALLOWING_IMPORT = textwrap.dedent(
    """
    import sys
    sys.argv[0] = "rebound-server"  # what running_as_peer() recognises
    import time
    import peers.startup
    try:  # like a library's import that catches everything, KeyboardInterrupt too
        print("ready", flush=True)
        time.sleep(20)
    except BaseException:
        pass
    print("went on after the Ctrl-C", flush=True)
    """
)


@pytest.mark.parametrize(
    "inherited", [signal.SIG_DFL, signal.SIG_IGN], ids=["terminal", "background"]
)
def test_a_ctrl_c_during_a_swallowing_import_still_ends_the_peer_with_130(
    inherited: signal.Handlers,
) -> None:
    """Also when started with SIGINT ignored (by a non-interactive shell's `&`)."""
    proc = subprocess.Popen(
        [sys.executable, "-c", SWALLOWING_IMPORT],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, inherited),
    )  # fmt: skip
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "ready"
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=20)
    assert proc.returncode == EXIT_INTERRUPTED, err
    assert "went on" not in out
    assert "Traceback" not in err


def test_imported_as_a_library_sigint_is_left_alone() -> None:
    probe = subprocess.run(
        [sys.executable, "-c", "import signal; before = signal.getsignal(signal.SIGINT); "
         "import peers.startup; print(signal.getsignal(signal.SIGINT) is before)"],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    assert probe.stdout.strip() == "True"
