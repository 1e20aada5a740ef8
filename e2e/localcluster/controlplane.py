"""Start and stop etcd, kube-apiserver, kube-controller-manager and kube-scheduler.

They run in the control plane's network namespace (see `layout`), as background processes
with one log file each and one pid file each. `flags_*` are pure and unit-tested; `start`
brings the pieces up in order and waits for each one's health endpoint, raising
`ClusterError` naming the component and its log file when one fails.
"""

from __future__ import annotations

import os
import signal
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from localcluster import kubeconfig, network
from localcluster.layout import Layout, NodeLayout
from localcluster.pki import CertificateAuthority, Identity, KeyPair, service_account_keys

STOP_GRACE_S = 10.0


class ClusterError(RuntimeError):
    """One line naming the failed component and its log file."""


@dataclass(frozen=True)
class Credentials:
    """Every certificate and key the control plane and its clients use."""

    ca: Path
    api_serving: KeyPair
    admin: KeyPair
    controller_manager: KeyPair
    scheduler: KeyPair
    nodes: dict[str, tuple[KeyPair, KeyPair]]
    """Node name -> (its client certificate, its kubelet serving certificate)."""
    kubelet_client: KeyPair
    service_account: KeyPair


ADMIN = Identity("rebound-admin", ("system:masters",))
CONTROLLER_MANAGER = Identity("system:kube-controller-manager")
SCHEDULER = Identity("system:kube-scheduler")


def node_identity(node: NodeLayout) -> Identity:
    """Who a process node authenticates as: `system:node:<name>` in `system:nodes`."""
    return Identity(f"system:node:{node.name}", ("system:nodes",))


KUBELET_CLIENT = Identity("kube-apiserver-kubelet-client", ("kubelet-api-admin",))


def make_credentials(layout: Layout) -> Credentials:
    """Create (or reuse) the CA and every certificate, and the kubeconfigs that use them."""
    ca = CertificateAuthority(layout.pki)
    api_hosts = [
        layout.api_ip,
        layout.kubernetes_service_ip,
        "127.0.0.1",
        "localhost",
        "kubernetes",
        "kubernetes.default",
        "kubernetes.default.svc",
        "kubernetes.default.svc.cluster.local",
    ]
    creds = Credentials(
        ca=ca.cert_path,
        api_serving=ca.issue("apiserver", "kube-apiserver", hosts=api_hosts, server=True),
        admin=ca.client("admin", ADMIN),
        controller_manager=ca.client("controller-manager", CONTROLLER_MANAGER),
        scheduler=ca.client("scheduler", SCHEDULER),
        nodes={
            node.name: (
                ca.client(node.component, node_identity(node)),
                ca.issue(
                    f"{node.component}-serving",
                    node_identity(node).user,
                    hosts=[node.address],
                    server=True,
                ),
            )
            for node in layout.nodes
        },
        kubelet_client=ca.client("kubelet-client", KUBELET_CLIENT),
        service_account=service_account_keys(layout.pki),
    )
    inside = f"https://127.0.0.1:{layout.api_port}"
    kubeconfig.write(layout.kubeconfig, layout.api_url, creds.ca, creds.admin, ADMIN.user)
    kubeconfig.write(
        layout.component_kubeconfig("controller-manager"),
        inside,
        creds.ca,
        creds.controller_manager,
        CONTROLLER_MANAGER.user,
    )
    kubeconfig.write(
        layout.component_kubeconfig("scheduler"), inside, creds.ca, creds.scheduler, SCHEDULER.user
    )
    for node in layout.nodes:
        kubeconfig.write(
            layout.component_kubeconfig(node.component),
            layout.api_url,
            creds.ca,
            creds.nodes[node.name][0],
            node_identity(node).user,
        )
    return creds


def flags_etcd(layout: Layout) -> list[str]:
    """etcd: one member, client and peer URLs on the namespace's loopback, no fsync."""
    return [
        f"--data-dir={layout.etcd_data}",
        "--listen-client-urls=http://127.0.0.1:2379",
        "--advertise-client-urls=http://127.0.0.1:2379",
        "--listen-peer-urls=http://127.0.0.1:2380",
        "--initial-advertise-peer-urls=http://127.0.0.1:2380",
        "--initial-cluster=default=http://127.0.0.1:2380",
        "--listen-metrics-urls=http://127.0.0.1:2381",
        "--unsafe-no-fsync",
        "--quota-backend-bytes=4294967296",
        "--log-level=warn",
    ]


OPERATOR_USER = "system:serviceaccount:rebound-system:rebound-operator"
AUDIT_POLICY = f"""apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
  - level: Metadata
    users: ["{OPERATOR_USER}"]
  - level: Metadata
    verbs: [create]
    resources: [{{group: rebound.dev, resources: [ballsessions]}}]
  - level: None
"""
"""Audit what the Rebound operator asks of the API server, and the creation of every
BallSession (one line per request, no bodies): `make bench-operator` counts the operator's
requests per session and times each session from its creation to its first status and to
its children, all by the API server's own clock."""


def audit_log(layout: Layout) -> Path:
    """The API server's audit log (the operator's requests)."""
    return layout.logs / "audit.log"


def write_audit_policy(layout: Layout) -> Path:
    """The audit policy file the API server reads."""
    path = layout.state / "audit-policy.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(AUDIT_POLICY)
    return path


def flags_apiserver(layout: Layout, creds: Credentials) -> list[str]:
    """kube-apiserver: Node+RBAC authorization, NodeRestriction (PodSecurity and
    ServiceAccount admission are on by default), a real service-account issuer, and an
    audit log of the operator's requests."""
    return [
        "--etcd-servers=http://127.0.0.1:2379",
        f"--advertise-address={layout.api_ip}",
        "--bind-address=0.0.0.0",
        f"--secure-port={layout.api_port}",
        f"--tls-cert-file={creds.api_serving.cert}",
        f"--tls-private-key-file={creds.api_serving.key}",
        f"--client-ca-file={creds.ca}",
        "--authorization-mode=Node,RBAC",
        "--enable-admission-plugins=NodeRestriction",
        "--anonymous-auth=false",
        f"--service-cluster-ip-range={layout.service_cidr}",
        f"--service-account-issuer={layout.api_url}",
        f"--service-account-key-file={creds.service_account.cert}",
        f"--service-account-signing-key-file={creds.service_account.key}",
        f"--kubelet-client-certificate={creds.kubelet_client.cert}",
        f"--kubelet-client-key={creds.kubelet_client.key}",
        f"--kubelet-certificate-authority={creds.ca}",
        "--kubelet-preferred-address-types=InternalIP",
        f"--requestheader-client-ca-file={creds.ca}",
        "--requestheader-allowed-names=front-proxy-client",
        "--requestheader-username-headers=X-Remote-User",
        "--requestheader-group-headers=X-Remote-Group",
        "--requestheader-extra-headers-prefix=X-Remote-Extra-",
        "--allow-privileged=false",
        "--profiling=false",
        "--event-ttl=1h",
        f"--audit-policy-file={layout.state / 'audit-policy.yaml'}",
        f"--audit-log-path={audit_log(layout)}",
        "--audit-log-format=json",
        "--audit-log-mode=batch",
        "--audit-log-batch-max-wait=1s",
        "--audit-log-maxsize=200",
        "--audit-log-maxbackup=1",
        "--v=1",
    ]


def flags_controller_manager(layout: Layout, creds: Credentials) -> list[str]:
    """kube-controller-manager: every default controller (GC, Deployment, ReplicaSet, service
    accounts, root CA publisher, namespace, node lifecycle, ...), one credential each."""
    config = layout.component_kubeconfig("controller-manager")
    return [
        f"--kubeconfig={config}",
        f"--authentication-kubeconfig={config}",
        f"--authorization-kubeconfig={config}",
        f"--service-account-private-key-file={creds.service_account.key}",
        f"--root-ca-file={creds.ca}",
        "--use-service-account-credentials=true",
        "--controllers=*",
        "--leader-elect=false",
        "--bind-address=0.0.0.0",
        "--secure-port=10257",
        f"--cluster-name={layout.bridge}",
        "--v=1",
    ]


def flags_scheduler(layout: Layout) -> list[str]:
    """kube-scheduler with its own credential."""
    config = layout.component_kubeconfig("scheduler")
    return [
        f"--kubeconfig={config}",
        f"--authentication-kubeconfig={config}",
        f"--authorization-kubeconfig={config}",
        "--leader-elect=false",
        "--bind-address=0.0.0.0",
        "--secure-port=10259",
        "--v=1",
    ]


def pid_file(layout: Layout, component: str) -> Path:
    """Where a daemon's pid is kept."""
    return layout.pids / f"{component}.pid"


def spawn(layout: Layout, component: str, argv: list[str], netns: str | None = None) -> int:
    """Start `argv` in the background (own session, output to the component's log)."""
    layout.logs.mkdir(parents=True, exist_ok=True)
    layout.pids.mkdir(parents=True, exist_ok=True)
    command = ["ip", "netns", "exec", netns, *argv] if netns else argv
    log = layout.log(component).open("ab")
    try:
        process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            cwd=layout.state,
        )
    finally:
        log.close()
    pid_file(layout, component).write_text(f"{process.pid}\n")
    return process.pid


def read_pid(layout: Layout, component: str) -> int | None:
    """The recorded pid of a daemon, if any."""
    try:
        return int(pid_file(layout, component).read_text().strip())
    except (OSError, ValueError):
        return None


def alive(pid: int | None) -> bool:
    """True while `pid` is a live (non-zombie) process."""
    if pid is None:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


def tls_context(creds: Credentials, client: KeyPair | None = None) -> ssl.SSLContext:
    """Trust the cluster CA; present `client` if given."""
    context = ssl.create_default_context(cafile=str(creds.ca))
    if client is not None:
        context.load_cert_chain(str(client.cert), str(client.key))
    return context


def wait_healthy(
    layout: Layout,
    component: str,
    url: str,
    context: ssl.SSLContext | None,
    timeout: float,
    pid: int | None = None,
) -> None:
    """Poll `url` until HTTP 200; ClusterError if the process dies or time runs out."""
    deadline = time.monotonic() + timeout
    last = "no answer"
    while time.monotonic() < deadline:
        if pid is not None and not alive(pid):
            raise ClusterError(f"{component} exited during start-up; see {layout.log(component)}")
        try:
            with urllib.request.urlopen(url, context=context, timeout=5) as response:
                if response.status == 200:
                    return
                last = f"HTTP {response.status}"
        except urllib.error.HTTPError as exc:
            last = f"HTTP {exc.code}"
        except (urllib.error.URLError, OSError) as exc:
            last = str(getattr(exc, "reason", exc))
        time.sleep(0.5)
    raise ClusterError(
        f"{component} not healthy after {timeout:g} s ({url}: {last}); see {layout.log(component)}"
    )


def start(layout: Layout, bins: Path, creds: Credentials, log: Callable[[str], None]) -> None:
    """etcd, then the API server, then the controller manager and the scheduler."""
    netns = layout.control_plane_netns
    network.ensure_network(layout)
    network.create_netns(netns, layout.api_ip, network.segments(layout)[0])
    layout.etcd_data.mkdir(parents=True, exist_ok=True)
    layout.etcd_data.chmod(0o700)
    write_audit_policy(layout)

    etcd = spawn(layout, "etcd", [str(bins / "etcd"), *flags_etcd(layout)], netns)
    log(f"etcd started (pid {etcd})")
    api = spawn(
        layout,
        "kube-apiserver",
        [str(bins / "kube-apiserver"), *flags_apiserver(layout, creds)],
        netns,
    )
    admin = tls_context(creds, creds.admin)
    try:
        wait_healthy(layout, "kube-apiserver", f"{layout.api_url}/readyz", admin, 120, api)
    except ClusterError:
        if not alive(etcd):
            raise ClusterError(f"etcd exited during start-up; see {layout.log('etcd')}") from None
        raise
    log(f"kube-apiserver ready at {layout.api_url}")
    kcm = spawn(
        layout,
        "kube-controller-manager",
        [str(bins / "kube-controller-manager"), *flags_controller_manager(layout, creds)],
        netns,
    )
    scheduler = spawn(
        layout, "kube-scheduler", [str(bins / "kube-scheduler"), *flags_scheduler(layout)], netns
    )
    insecure = ssl.create_default_context()
    insecure.check_hostname = False
    insecure.verify_mode = ssl.CERT_NONE  # their self-signed serving certs; /healthz only
    wait_healthy(
        layout,
        "kube-controller-manager",
        f"https://{layout.api_ip}:10257/healthz",
        insecure,
        60,
        kcm,
    )
    wait_healthy(
        layout, "kube-scheduler", f"https://{layout.api_ip}:10259/healthz", insecure, 60, scheduler
    )
    log("kube-controller-manager and kube-scheduler healthy")


CONTROL_PLANE = ("kube-scheduler", "kube-controller-manager", "kube-apiserver", "etcd")


def daemons(layout: Layout) -> tuple[str, ...]:
    """Every daemon in stop order: the nodes first (they stop the pods), etcd last. Nodes
    an earlier `up` started with more nodes than this layout has are included too."""
    nodes = {node.component for node in layout.nodes}
    if layout.pids.is_dir():
        nodes |= {p.stem for p in layout.pids.glob("process-node*.pid")}
    return (*sorted(nodes), *CONTROL_PLANE)


def stop_pid(pid: int, grace: float = STOP_GRACE_S) -> None:
    """SIGTERM the process group of `pid`, SIGKILL whatever is left after `grace` seconds."""
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(pid, sig)
        except (ProcessLookupError, PermissionError):
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                return
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if not alive(pid):
                return
            time.sleep(0.1)


def stop(layout: Layout, log: Callable[[str], None]) -> None:
    """Stop every daemon and every process left in the cluster's namespaces; remove them."""
    for component in daemons(layout):
        pid = read_pid(layout, component)
        if alive(pid):
            assert pid is not None
            stop_pid(pid)
            log(f"stopped {component} (pid {pid})")
    for name in network.list_netns(layout.pod_netns_prefix) + network.list_netns(
        layout.control_plane_netns
    ):
        for pid in network.pids_in(name):
            stop_pid(pid, grace=2.0)
        network.delete_netns(name)
    network.remove_bridges(layout)
