"""The whole story: the real operator (kopf) against the emulated API server, the peers run
as local processes by a fake kubelet from the Pod specs the operator created, signaling
through the emulated per-role ConfigMaps."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from kube_harness import Emulator, FakeKubelet, GarbageCollector, cluster, wait_for
from kubernetes import client

NS = "rebound-test"
GROUP, VERSION, PLURAL = "rebound.dev", "v1alpha1", "ballsessions"
SMALL = {"width": 320, "height": 240, "radius": 12, "fps": 30}


UNKNOWN_UID = 54321
"""A UID with no passwd entry (as the operator image's 10001 has none)."""
USER_VARIABLES = ("USER", "LOGNAME", "LNAME", "USERNAME")
"""getpass.getuser() reads these before asking the passwd database."""


def as_unknown_uid() -> list[str] | None:
    """A command prefix that runs a process as UID 54321 with no passwd entry: setpriv if
    this interpreter is reachable by that UID, else a user namespace mapping it; None if
    neither works here (not root, no user namespaces)."""
    if os.geteuid() != 0:
        return None
    probe = [sys.executable, "-c", "import os, rebound_operator; assert os.getuid() == 54321"]
    for prefix in (
        ["setpriv", f"--reuid={UNKNOWN_UID}", f"--regid={UNKNOWN_UID}", "--clear-groups"],
        ["unshare", "--user", f"--map-user={UNKNOWN_UID}", f"--map-group={UNKNOWN_UID}"],
    ):
        if shutil.which(prefix[0]) is None:
            continue
        done = subprocess.run(prefix + probe, capture_output=True, timeout=60, check=False)
        if done.returncode == 0:
            return prefix
    return None


@dataclass
class Stage:
    """Emulator, kubelet, garbage collector and a restartable operator process."""

    emulator: Emulator
    kubeconfig: Path
    kubelet: FakeKubelet
    gc: GarbageCollector
    tmp: Path
    operator: subprocess.Popen[bytes] | None = None
    starts: int = 0

    @property
    def custom(self) -> client.CustomObjectsApi:
        return client.CustomObjectsApi(self.emulator.api)

    @property
    def core(self) -> client.CoreV1Api:
        return client.CoreV1Api(self.emulator.api)

    def start_operator(self, prefix: list[str] | None = None, liveness: str = "") -> None:
        """Start `python -m rebound_operator`, optionally under a command prefix; `liveness`
        is its probe + /metrics URL (none by default)."""
        self.starts += 1
        log = (self.tmp / f"operator-{self.starts}.log").open("wb")
        env = {k: v for k, v in os.environ.items() if k not in USER_VARIABLES}
        kubeconfig = self.kubeconfig
        if prefix:
            # readable by any UID (pytest's tmp_path is not)
            shared = Path(tempfile.mkdtemp(prefix="rebound-kube-"))
            shared.chmod(0o755)
            kubeconfig = Path(shutil.copy(self.kubeconfig, shared / "config"))
            kubeconfig.chmod(0o644)
            env["HOME"] = "/nonexistent"
        self.operator = subprocess.Popen(
            [
                *(prefix or []),
                sys.executable,
                "-m",
                "rebound_operator",
                "-n",
                NS,
                "--liveness",
                liveness,
                "--pending-timeout",
                "60",
            ],
            env={**env, "KUBECONFIG": str(kubeconfig)},
            stdout=log,
            stderr=subprocess.STDOUT,
        )

    def kill_operator(self) -> None:
        assert self.operator is not None
        self.operator.send_signal(signal.SIGKILL)
        self.operator.wait(10)

    def stop_operator(self) -> None:
        if self.operator is not None and self.operator.poll() is None:
            self.operator.terminate()
            try:
                self.operator.wait(20)
            except subprocess.TimeoutExpired:
                self.operator.kill()
                self.operator.wait()

    def create(self, name: str, **spec: Any) -> None:
        body = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "BallSession",
            "metadata": {"name": name, "namespace": NS},
            "spec": spec,
        }
        self.custom.create_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, body)

    def session(self, name: str) -> dict[str, Any]:
        return dict(self.custom.get_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, name))

    def status(self, name: str) -> dict[str, Any]:
        return dict(self.session(name).get("status") or {})

    def wait_phase(self, name: str, phases: set[str], timeout: float = 60) -> dict[str, Any]:
        return dict(
            wait_for(
                lambda: self.status(name).get("phase") in phases and self.status(name),
                timeout,
                what=f"{name} to reach {phases} ({self.logs()})",
            )
        )

    def children(self, name: str) -> dict[str, list[dict[str, Any]]]:
        found: dict[str, list[dict[str, Any]]] = {}
        for resource in (
            "v1/pods",
            "v1/configmaps",
            "v1/serviceaccounts",
            "rbac.authorization.k8s.io/v1/roles",
            "rbac.authorization.k8s.io/v1/rolebindings",
            "networking.k8s.io/v1/networkpolicies",
        ):
            found[resource] = [
                o
                for o in self.emulator.objects(resource)
                if (o["metadata"].get("labels") or {}).get("rebound.dev/session") == name
            ]
        return found

    def events(self, name: str) -> list[dict[str, Any]]:
        return [
            e
            for e in self.emulator.objects("v1/events")
            if (e.get("involvedObject") or {}).get("name") == name
        ]

    def logs(self) -> str:
        text = ""
        for path in sorted(self.tmp.glob("*.log")):
            text += f"\n--- {path.name}\n" + path.read_text(errors="replace")[-1500:]
        return text


@pytest.fixture
def bare_stage(tmp_path: Path) -> Iterator[Stage]:
    """Emulator, kubelet and GC; the test starts the operator itself."""
    with cluster(tmp_path, NS) as (emulator, kubeconfig, gc):
        kubelet = FakeKubelet(emulator, kubeconfig, tmp_path, NS).start()
        s = Stage(emulator, kubeconfig, kubelet, gc, tmp_path)
        try:
            yield s
        finally:
            s.stop_operator()
            kubelet.stop()


@pytest.fixture
def stage(bare_stage: Stage) -> Stage:
    """Emulator, kubelet, GC and the operator."""
    bare_stage.start_operator()
    return bare_stage


def test_a_session_succeeds_with_metrics_in_status(stage: Stage) -> None:
    stage.create("good", frames=120, **SMALL)
    status = stage.wait_phase("good", {"Succeeded", "Failed"}, timeout=90)
    assert status["phase"] == "Succeeded", status
    metrics = status["metrics"]
    assert metrics["final"] is True
    assert metrics["frames_sent"] == 120
    assert metrics["frames_matched"] >= 0.95 * metrics["frames_sent"]
    assert metrics["mean_error_px"] < 0.25
    for column in ("mean_error_px", "p95_error_px", "achieved_fps", "frames_sent"):
        assert metrics[column] is not None, column  # the printer columns
    conditions = {c["type"]: c for c in status["conditions"]}
    assert conditions["Succeeded"]["status"] == "True"
    assert conditions["Failed"]["status"] == "False"
    assert conditions["Signaled"]["status"] == "True"
    assert all(c["lastTransitionTime"] and c["reason"] for c in conditions.values())
    assert status["serverPod"] == "good-server" and status["clientPod"] == "good-client"
    assert conditions["Ready"]["status"] == "True" and conditions["Stalled"]["status"] == "False"
    # each peer wrote only its own ConfigMap
    maps = {
        m["metadata"]["name"]: m.get("data") or {} for m in stage.children("good")["v1/configmaps"]
    }
    assert set(maps["good-server-signaling"]) == {"offer", "metrics", "summary", "series"}
    assert set(maps["good-client-signaling"]) == {"answer"}
    assert status["startTime"] and status["completionTime"]
    uid = stage.session("good")["metadata"]["uid"]
    children = stage.children("good")
    assert {k: len(v) for k, v in children.items()} == {
        "v1/pods": 2,
        "networking.k8s.io/v1/networkpolicies": 1,
        "v1/configmaps": 2,
        "v1/serviceaccounts": 2,
        "rbac.authorization.k8s.io/v1/roles": 2,
        "rbac.authorization.k8s.io/v1/rolebindings": 2,
    }
    for objects in children.values():
        for obj in objects:
            refs = obj["metadata"]["ownerReferences"]
            assert refs[0]["uid"] == uid and refs[0]["controller"] is True
    reasons = {e.get("reason") for e in stage.events("good")}
    assert {"Created", "Completed"} <= reasons
    # Like Jobs, finished pods stay for their logs.
    assert {p["status"]["phase"] for p in children["v1/pods"]} == {"Succeeded"}


def test_a_killed_client_fails_the_session_naming_the_pod(stage: Stage) -> None:
    stage.create("killed", frames=0, durationSeconds=0, activeDeadlineSeconds=0, **SMALL)
    stage.wait_phase("killed", {"Connected"})
    stage.kubelet.kill("killed-client")
    status = stage.wait_phase("killed", {"Failed"}, timeout=30)
    assert status["reason"] == "PodFailed"
    assert "killed-client" in status["message"]
    # the operator stops the server that would otherwise stream forever
    wait_for(lambda: not stage.kubelet.running(), 30, what="peer processes to stop")


def test_a_client_that_never_starts_fails_pending_not_signaling(stage: Stage) -> None:
    """The signaling clock starts when both peers run: a client that never starts is a
    pending problem, even long after the signaling timeout (and the real server peer, which
    does run, waits for it instead of giving up first)."""
    stage.kubelet.hold.add("silent-client")  # this pod never starts
    stage.create("silent", signalingTimeoutSeconds=5, pendingTimeoutSeconds=12, **SMALL)
    status = stage.wait_phase("silent", {"Failed"}, timeout=40)
    assert status["reason"] == "PodPendingTooLong", status
    assert status["message"] == "client pod silent-client has not started after 12 s"
    conditions = {c["type"]: c for c in status["conditions"]}
    assert conditions["Signaled"]["status"] == "False"
    assert conditions["Failed"]["reason"] == "PodPendingTooLong"


def test_an_error_above_the_threshold_fails(stage: Stage) -> None:
    stage.create("strict", frames=60, maxMeanErrorPx=0.000001, **SMALL)
    status = stage.wait_phase("strict", {"Succeeded", "Failed"}, timeout=60)
    assert status["phase"] == "Failed"
    assert status["reason"] == "ErrorTooHigh"
    assert "exceeds maxMeanErrorPx" in status["message"]
    assert status["metrics"]["mean_error_px"] > 0.000001


def test_an_invalid_spec_fails_without_children(stage: Stage) -> None:
    stage.create("bad", width=320, height=240, radius=200)
    status = stage.wait_phase("bad", {"Failed"}, timeout=30)
    assert status["reason"] == "InvalidSpec"
    assert "does not fit" in status["message"]
    assert not any(stage.children("bad").values())


def test_deleting_a_running_session_stops_the_peers_and_removes_children(stage: Stage) -> None:
    stage.create("doomed", frames=0, durationSeconds=0, activeDeadlineSeconds=0, **SMALL)
    stage.wait_phase("doomed", {"Connected"})
    stage.custom.delete_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, "doomed")
    wait_for(lambda: not any(stage.children("doomed").values()), 30, what="children to go")
    wait_for(lambda: not stage.kubelet.running(), 30, what="peer processes to stop")


def test_an_operator_restart_mid_session_duplicates_nothing(stage: Stage) -> None:
    stage.create("steady", frames=240, **SMALL)
    stage.wait_phase("steady", {"Connected"})
    before = {
        p["metadata"]["name"]: p["metadata"]["uid"] for p in stage.children("steady")["v1/pods"]
    }
    stage.kill_operator()
    stage.start_operator()
    status = stage.wait_phase("steady", {"Succeeded", "Failed"}, timeout=90)
    assert status["phase"] == "Succeeded", status
    children = stage.children("steady")
    after = {p["metadata"]["name"]: p["metadata"]["uid"] for p in children["v1/pods"]}
    assert after == before
    assert all(len(v) == (1 if "networkpolicies" in k else 2) for k, v in children.items())
    assert status["metrics"]["frames_sent"] == 240


# ---- hardening (issue 8) --------------------------------------------------------------------


def test_the_operator_runs_under_a_uid_without_a_passwd_entry(bare_stage: Stage) -> None:
    prefix = as_unknown_uid()
    if prefix is None:
        pytest.skip("needs root and setpriv or unshare to run as a UID without a passwd entry")
    stage = bare_stage
    stage.start_operator(prefix)
    stage.create("nobody", frames=60, **SMALL)
    status = stage.wait_phase("nobody", {"Succeeded", "Failed"}, timeout=90)
    assert status["phase"] == "Succeeded", status
    assert stage.operator is not None and stage.operator.poll() is None
    assert "getpwuid" not in stage.logs()


def _stranger(stage: Stage, name: str, labels: dict[str, str] | None = None) -> str:
    """An unowned pod the kubelet runs (a long sleep)."""
    pod = {
        "metadata": {"name": name, "namespace": NS, "labels": labels or {}},
        "spec": {
            "containers": [
                {
                    "name": "app",
                    "image": "app",
                    "command": ["python", "-c", "import time; time.sleep(600)"],
                }
            ]
        },
    }
    created = stage.core.create_namespaced_pod(NS, pod)
    wait_for(lambda: name in stage.kubelet.running(), 30, what=f"{name} to run")
    return str(created.metadata.uid)


def test_an_unowned_pod_with_a_childs_name_is_never_touched(stage: Stage) -> None:
    # Labelled like a child, so every change of it reaches the operator.
    uid = _stranger(stage, "web-server", {"rebound.dev/session": "web"})
    stage.create("web", **SMALL)
    status = stage.wait_phase("web", {"Failed"}, timeout=30)
    assert status["reason"] == "ChildConflict"
    assert "web-server" in status["message"]
    time.sleep(3)  # the old operator deleted it about a second later
    pods = {p["metadata"]["name"]: p for p in stage.emulator.objects("v1/pods")}
    assert pods["web-server"]["metadata"]["uid"] == uid
    assert "web-server" in stage.kubelet.running()


def test_delete_and_recreate_with_the_same_name_runs_again(stage: Stage) -> None:
    stage.create("again", frames=30, **SMALL)
    first = stage.wait_phase("again", {"Succeeded", "Failed"}, timeout=90)
    assert first["phase"] == "Succeeded", first
    with stage.gc.held():  # the old children linger, as with a busy garbage collector
        stage.custom.delete_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, "again")
        stage.create("again", frames=45, **SMALL)
        wait_for(
            lambda: stage.status("again").get("reason") == "WaitingForCleanup",
            30,
            what="the new session to wait for the old children",
        )
    second = stage.wait_phase("again", {"Succeeded", "Failed"}, timeout=90)
    assert second["phase"] == "Succeeded", second
    assert second["metrics"]["frames_sent"] == 45  # measured by the new pods, not the old
    uid = stage.session("again")["metadata"]["uid"]
    for objects in stage.children("again").values():
        for obj in objects:
            assert obj["metadata"]["ownerReferences"][0]["uid"] == uid


def test_a_missing_turn_secret_fails_clearly_and_leaks_nothing(stage: Stage) -> None:
    ref = {"name": "turn", "key": "password"}
    turn = {"urls": ["turn:127.0.0.1:3478"], "username": "rebound", "credentialSecretRef": ref}
    stage.create("turn", iceServers=[turn], **SMALL)
    status = stage.wait_phase("turn", {"Failed"}, timeout=30)
    assert status["reason"] == "PodStartFailed"
    assert status["message"].endswith(
        'cannot start (CreateContainerConfigError): secret "turn" not found'
    )
