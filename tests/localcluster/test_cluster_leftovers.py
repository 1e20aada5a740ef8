"""`cluster-up` after a run that never reached `cluster-down` starts from an empty cluster."""

from __future__ import annotations

import subprocess
from pathlib import Path

from localcluster import controlplane
from localcluster.cluster import clear_leftovers
from localcluster.layout import Layout


def test_an_earlier_runs_daemon_and_state_are_gone_before_a_new_start(tmp_path: Path) -> None:
    layout = Layout(
        state=tmp_path / ".cluster",
        bridge="rbtest-none",
        control_plane_netns="rbtest-cp-none",
        pod_netns_prefix="rbtest-pod-none-",
    )
    (layout.state / "etcd" / "member").mkdir(parents=True)
    (layout.state / "etcd" / "member" / "db").write_bytes(b"old sessions and pods")
    layout.pids.mkdir(parents=True)
    leftover = subprocess.Popen(["sleep", "300"], start_new_session=True)
    try:
        controlplane.pid_file(layout, "etcd").write_text(f"{leftover.pid}\n")
        said: list[str] = []
        clear_leftovers(layout, said.append)
        assert leftover.wait(timeout=15) is not None  # stopped, not left running
        assert not layout.state.exists()
        assert said == [
            f"removed {layout.state}, left by an earlier run that did not end with cluster-down"
        ]
        said.clear()
        clear_leftovers(layout, said.append)  # nothing left: nothing said
        assert said == []
    finally:
        leftover.kill()
        leftover.wait()
