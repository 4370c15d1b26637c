"""Start and stop one real control plane: etcd, kube-apiserver, kube-controller-manager,
kube-scheduler and kwok, each a child process in its own process group.

Start order is etcd (until /health), the API server (until /readyz), the controller manager,
the scheduler, kwok; then N fake Nodes are created and the start waits until every Node is
Ready and the ``default`` ServiceAccount exists. Stop is the reverse order: SIGTERM to each
child's process group, SIGKILL after a grace period, so no child or grandchild survives. Every
child also gets SIGTERM from the kernel if the process that started it dies (Linux
PR_SET_PDEATHSIG; the thread that starts the control plane must outlive it).

Everything listens on 127.0.0.1 only; ports are chosen free at start (``port`` fixes the API
server's). Logs go to ``<data-dir>/logs/<component>.log``.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import structlog

from realkube.admin_client import AdminClient
from realkube.binaries import KubeBinaries
from realkube.certificates import (
    ADMIN,
    CONTROLLER_MANAGER,
    ETCD_CLIENT,
    KWOK,
    SCHEDULER,
    ClientIdentity,
    Pki,
    generate_pki,
)
from realkube.kubeconfigs import write_kubeconfig
from realkube.network_namespace import loopback_only_reason

_log = structlog.get_logger(__name__)

SERVICE_CIDR = "10.96.0.0/16"
FIRST_SERVICE_IP = "10.96.0.1"
POD_CIDR = "10.244.0.0/16"
FAKE_NODE_ANNOTATION = ("kwok.x-k8s.io/node", "fake")
SERVICE_ACCOUNT_ISSUER = "https://kubernetes.default.svc.cluster.local"
SERVICE_LOAD_BALANCER_STAGE = """\
apiVersion: kwok.x-k8s.io/v1alpha1
kind: Stage
metadata:
  name: meshplane-service-load-balancer
spec:
  resourceRef:
    apiGroup: v1
    kind: Service
  selector:
    matchExpressions:
    - key: .spec.type
      operator: In
      values: [LoadBalancer]
    - key: .status.loadBalancer.ingress
      operator: DoesNotExist
  next:
    statusTemplate: |
      loadBalancer:
        ingress:
        - ip: {{ .spec.clusterIP | Quote }}
          ipMode: VIP
"""
"""A kwok stage that plays the cloud load balancer: a LoadBalancer Service gets its ClusterIP as
its ingress address (unique, and inside the loopback-only namespace unreachable like every
other Service address). Without it such Services stay pending forever, as on a bare cluster."""
_PR_SET_PDEATHSIG = 1
_POLL_SECONDS = 0.2


class ControlPlaneError(RuntimeError):
    """The control plane did not come up; the message says which part and where its log is."""


@dataclass(frozen=True, kw_only=True)
class ControlPlaneSettings:
    """What to start, and where it keeps its state."""

    binaries: KubeBinaries
    data_dir: Path
    kubeconfig_out: Path
    nodes: int = 1
    port: int = 0
    """The API server's secure port (0: any free port)."""
    start_timeout_seconds: float = 180.0
    stop_grace_seconds: float = 15.0
    volumes: int = 32
    """PersistentVolumes pre-created for claims (there is no dynamic provisioner)."""
    allow_host_network: bool = False
    """Start even in a network namespace with interfaces besides loopback (see
    docs/realkube.md for why that is refused by default)."""


@dataclass(kw_only=True)
class Component:
    """One started child process."""

    name: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def log_tail(self, lines: int = 8) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.strip().splitlines()[-lines:])


@dataclass(frozen=True, kw_only=True)
class Ports:
    apiserver: int
    etcd_client: int
    etcd_peer: int


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _die_with_parent() -> None:
    """In the child, before exec: SIGTERM when the parent dies (Linux only)."""
    with contextlib.suppress(Exception):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


@dataclass(kw_only=True)
class ControlPlane:
    """One control plane; `start` blocks until it is usable, `stop` ends every child."""

    settings: ControlPlaneSettings
    components: list[Component] = field(default_factory=list)
    url: str = ""
    etcd_url: str = ""

    @property
    def pki(self) -> Pki:
        return Pki(directory=self.settings.data_dir / "pki")

    @property
    def logs(self) -> Path:
        return self.settings.data_dir / "logs"

    @property
    def kubeconfig(self) -> Path:
        return self.settings.kubeconfig_out

    def pids(self) -> list[int]:
        """Process ids of the running children."""
        return [c.process.pid for c in self.components if c.process.poll() is None]

    # -- start ----------------------------------------------------------------------------

    def start(self) -> None:
        """Start everything in order; on any failure stop what started and raise."""
        try:
            self._start()
        except BaseException:
            self.stop()
            raise

    def _start(self) -> None:
        settings = self.settings
        if not settings.allow_host_network:
            reason = loopback_only_reason()
            if reason is not None:
                raise ControlPlaneError(f"refusing to start: {reason}")
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        self.logs.mkdir(parents=True, exist_ok=True)
        pki = self._pki()
        ports = Ports(
            apiserver=settings.port or _free_port(),
            etcd_client=_free_port(),
            etcd_peer=_free_port(),
        )
        self.url = f"https://127.0.0.1:{ports.apiserver}"
        self.etcd_url = f"https://127.0.0.1:{ports.etcd_client}"
        started = time.monotonic()
        self._start_etcd(pki, ports)
        admin = self._start_apiserver(pki, ports)
        self._start_controllers(pki)
        self._start_nodes(admin)
        _log.info(
            "realkube.started",
            url=self.url,
            nodes=settings.nodes,
            seconds=round(time.monotonic() - started, 1),
        )

    def _start_etcd(self, pki: Pki, ports: Ports) -> None:
        etcd = self._spawn("etcd", self._etcd_args(pki, ports))
        etcd_client = AdminClient(
            self.etcd_url,
            ca=pki.ca_cert,
            cert=pki.client_cert(ETCD_CLIENT),
            key=pki.client_key(ETCD_CLIENT),
        )
        self._wait(etcd, "etcd /health", lambda: _etcd_healthy(etcd_client))

    def _start_apiserver(self, pki: Pki, ports: Ports) -> AdminClient:
        """kube-apiserver, ready, and the admin kubeconfig; returns the admin client."""
        apiserver = self._spawn("kube-apiserver", self._apiserver_args(pki, ports))
        admin = self._admin(pki)
        self._wait(apiserver, "kube-apiserver /readyz", lambda: _ok(admin, "/readyz"))
        write_kubeconfig(self.settings.kubeconfig_out, server=self.url, pki=pki, identity=ADMIN)
        return admin

    def _start_controllers(self, pki: Pki) -> None:
        """kube-controller-manager, kube-scheduler and kwok, each with its own kubeconfig."""
        settings = self.settings
        kubeconfigs = settings.data_dir / "kubeconfigs"
        for identity in (CONTROLLER_MANAGER, SCHEDULER, KWOK):
            self._component_kubeconfig(kubeconfigs, identity, pki)
        self._spawn(
            "kube-controller-manager",
            self._controller_manager_args(pki, kubeconfigs / "kube-controller-manager"),
        )
        self._spawn("kube-scheduler", self._scheduler_args(kubeconfigs / "kube-scheduler"))
        stages = settings.data_dir / "kwok-stages.yaml"
        kwok_stages = subprocess.run(
            [str(settings.binaries.path("kwok")), "default-stages"],
            check=True,
            capture_output=True,
            timeout=30,
        ).stdout.decode()
        stages.write_text(f"{kwok_stages.rstrip()}\n---\n{SERVICE_LOAD_BALANCER_STAGE}")
        self._spawn("kwok", self._kwok_args(kubeconfigs / "kwok", stages))

    def _start_nodes(self, admin: AdminClient) -> None:
        """The fake nodes and volumes, then wait for them and the default ServiceAccount."""
        settings = self.settings
        for index in range(settings.nodes):
            _create_node(admin, f"realkube-node-{index}")
        _create_volume_pool(admin, settings.volumes)
        self._wait_all("Nodes Ready", lambda: _nodes_ready(admin, settings.nodes))
        self._wait_all(
            "the default ServiceAccount",
            lambda: admin.get("/api/v1/namespaces/default/serviceaccounts/default").status == 200,
        )

    def _pki(self) -> Pki:
        pki = self.pki
        if not pki.service_account_public_key.exists():
            generate_pki(pki.directory, first_service_ip=FIRST_SERVICE_IP)
        return pki

    def _admin(self, pki: Pki) -> AdminClient:
        return AdminClient(
            self.url, ca=pki.ca_cert, cert=pki.client_cert(ADMIN), key=pki.client_key(ADMIN)
        )

    def _component_kubeconfig(self, directory: Path, identity: ClientIdentity, pki: Pki) -> None:
        write_kubeconfig(directory / identity.name, server=self.url, pki=pki, identity=identity)

    def _spawn(self, name: str, args: Sequence[str]) -> Component:
        log_path = self.logs / f"{name}.log"
        with log_path.open("ab") as log:
            process = subprocess.Popen(
                [str(self.settings.binaries.path(name)), *args],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.settings.data_dir,
                start_new_session=True,
                # Runs before exec and only calls prctl: safe with threads in the parent.
                preexec_fn=_die_with_parent if sys.platform == "linux" else None,  # noqa: PLW1509
            )
        component = Component(name=name, process=process, log_path=log_path)
        self.components.append(component)
        _log.info("realkube.component_started", component=name, pid=process.pid)
        return component

    def _deadline(self) -> float:
        return time.monotonic() + self.settings.start_timeout_seconds

    def _exited(self) -> Component | None:
        return next((c for c in self.components if c.process.poll() is not None), None)

    def _failed(self, component: Component, what: str) -> ControlPlaneError:
        tail = component.log_tail()
        return ControlPlaneError(
            f"{component.name} exited with {component.process.returncode} while waiting for "
            f"{what}; see {component.log_path}"
            + ("\n  " + tail.replace("\n", "\n  ") if tail else "")
        )

    def _wait(self, component: Component, what: str, ready: Callable[[], bool]) -> None:
        self._wait_all(what, ready, blame=component)

    def _wait_all(
        self, what: str, ready: Callable[[], bool], *, blame: Component | None = None
    ) -> None:
        """Poll ``ready`` until true; fail when a child exits or the start timeout passes."""
        deadline = self._deadline()
        last_error = ""
        while True:
            try:
                if ready():
                    return
            except (OSError, ValueError) as exc:
                last_error = f" (last error: {exc})"
            exited = self._exited()
            if exited is not None:
                raise self._failed(exited, what)
            if time.monotonic() > deadline:
                where = f"; see {blame.log_path}" if blame else f"; see the logs under {self.logs}"
                raise ControlPlaneError(
                    f"timed out after {self.settings.start_timeout_seconds:g}s waiting for "
                    f"{what}{last_error}{where}"
                )
            time.sleep(_POLL_SECONDS)

    # -- arguments ------------------------------------------------------------------------

    def _etcd_args(self, pki: Pki, ports: Ports) -> list[str]:
        peer = f"http://127.0.0.1:{ports.etcd_peer}"
        return [
            "--name=realkube",
            f"--data-dir={self.settings.data_dir / 'etcd'}",
            f"--listen-client-urls={self.etcd_url}",
            f"--advertise-client-urls={self.etcd_url}",
            f"--listen-peer-urls={peer}",
            f"--initial-advertise-peer-urls={peer}",
            f"--initial-cluster=realkube={peer}",
            f"--cert-file={pki.etcd_cert}",
            f"--key-file={pki.etcd_key}",
            f"--trusted-ca-file={pki.ca_cert}",
            "--client-cert-auth",
            "--unsafe-no-fsync",
            "--log-level=warn",
        ]

    def _apiserver_args(self, pki: Pki, ports: Ports) -> list[str]:
        return [
            f"--etcd-servers={self.etcd_url}",
            f"--etcd-cafile={pki.ca_cert}",
            f"--etcd-certfile={pki.client_cert(ETCD_CLIENT)}",
            f"--etcd-keyfile={pki.client_key(ETCD_CLIENT)}",
            "--bind-address=127.0.0.1",
            "--advertise-address=127.0.0.1",
            # The endpoint reconciler refuses a loopback address for the `kubernetes` Service's
            # endpoints; nothing here runs in a Pod that would use them.
            "--endpoint-reconciler-type=none",
            f"--secure-port={ports.apiserver}",
            f"--cert-dir={self.settings.data_dir / 'apiserver'}",
            f"--tls-cert-file={pki.apiserver_cert}",
            f"--tls-private-key-file={pki.apiserver_key}",
            f"--client-ca-file={pki.ca_cert}",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            f"--service-account-issuer={SERVICE_ACCOUNT_ISSUER}",
            f"--service-account-key-file={pki.service_account_public_key}",
            f"--service-account-signing-key-file={pki.service_account_key}",
            "--authorization-mode=Node,RBAC",
            "--enable-admission-plugins=NodeRestriction,MutatingAdmissionWebhook,"
            "ValidatingAdmissionWebhook",
            "--allow-privileged=true",
            "--profiling=false",
        ]

    def _controller_manager_args(self, pki: Pki, kubeconfig: Path) -> list[str]:
        return [
            f"--kubeconfig={kubeconfig}",
            f"--authentication-kubeconfig={kubeconfig}",
            f"--authorization-kubeconfig={kubeconfig}",
            "--bind-address=127.0.0.1",
            "--secure-port=0",
            "--leader-elect=false",
            "--use-service-account-credentials=true",
            f"--service-account-private-key-file={pki.service_account_key}",
            f"--root-ca-file={pki.ca_cert}",
            f"--cluster-signing-cert-file={pki.ca_cert}",
            f"--cluster-signing-key-file={pki.ca_key}",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            "--profiling=false",
        ]

    def _scheduler_args(self, kubeconfig: Path) -> list[str]:
        return [
            f"--kubeconfig={kubeconfig}",
            f"--authentication-kubeconfig={kubeconfig}",
            f"--authorization-kubeconfig={kubeconfig}",
            "--bind-address=127.0.0.1",
            "--secure-port=0",
            "--leader-elect=false",
            "--profiling=false",
        ]

    def _kwok_args(self, kubeconfig: Path, stages: Path) -> list[str]:
        key, value = FAKE_NODE_ANNOTATION
        return [
            f"--kubeconfig={kubeconfig}",
            f"--config={stages}",
            "--manage-all-nodes=false",
            f"--manage-nodes-with-annotation-selector={key}={value}",
            f"--cidr={POD_CIDR}",
            "--node-ip=10.244.0.1",
            "--node-lease-duration-seconds=40",
        ]

    # -- stop -----------------------------------------------------------------------------

    def stop(self) -> None:
        """Stop children newest first: SIGTERM to the group, SIGKILL after the grace period."""
        while self.components:
            component = self.components.pop()
            _stop_group(component, self.settings.stop_grace_seconds)
            _log.info(
                "realkube.component_stopped",
                component=component.name,
                exit_code=component.process.returncode,
            )


def _signal_group(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)  # the child leads its own session and process group


def _stop_group(component: Component, grace: float) -> None:
    process = component.process
    _signal_group(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        _log.warning("realkube.kill", component=component.name, pid=process.pid)
        _signal_group(process.pid, signal.SIGKILL)
        process.wait(timeout=30)
    # Anything the child left in its group goes too.
    _signal_group(process.pid, signal.SIGKILL)


def _ok(client: AdminClient, path: str) -> bool:
    reply = client.get(path)
    return reply.status == 200 and reply.body.strip() == b"ok"


def _etcd_healthy(client: AdminClient) -> bool:
    reply = client.get("/health")
    return reply.status == 200 and reply.json().get("health") == "true"


def _create_node(client: AdminClient, name: str) -> None:
    key, value = FAKE_NODE_ANNOTATION
    node = {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "annotations": {key: value},
            "labels": {
                "type": "kwok",
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
            },
        },
    }
    _create(client, "/api/v1/nodes", node)


STORAGE_CLASS = "standard"


def _create_volume_pool(client: AdminClient, count: int) -> None:
    """The default StorageClass and ``count`` PersistentVolumes of it for claims to bind to.

    Nothing provisions volumes here and no container mounts one, so a pool of large
    PersistentVolumes (hostPath, never used) stands in: the PV controller binds each claim of
    the default class to a free one, as with static provisioning. A released volume is not
    reused (reclaim policy Retain)."""
    storage_class = {
        "apiVersion": "storage.k8s.io/v1",
        "kind": "StorageClass",
        "metadata": {
            "name": STORAGE_CLASS,
            "annotations": {"storageclass.kubernetes.io/is-default-class": "true"},
        },
        "provisioner": "kubernetes.io/no-provisioner",
        "volumeBindingMode": "Immediate",
        "reclaimPolicy": "Retain",
    }
    _create(client, "/apis/storage.k8s.io/v1/storageclasses", storage_class)
    for index in range(count):
        volume = {
            "apiVersion": "v1",
            "kind": "PersistentVolume",
            "metadata": {"name": f"realkube-pv-{index}"},
            "spec": {
                "capacity": {"storage": "1Ti"},
                "accessModes": ["ReadWriteOnce", "ReadOnlyMany", "ReadWriteMany"],
                "persistentVolumeReclaimPolicy": "Retain",
                "storageClassName": STORAGE_CLASS,
                "hostPath": {"path": f"/realkube/volumes/{index}"},
            },
        }
        _create(client, "/api/v1/persistentvolumes", volume)


def _create(client: AdminClient, path: str, obj: Mapping[str, object]) -> None:
    reply = client.post(path, obj)
    if reply.status not in (201, 409):
        raise ControlPlaneError(
            f"creating {obj['kind']} failed: HTTP {reply.status} {reply.body[:200]!r}"
        )


def _nodes_ready(client: AdminClient, wanted: int) -> bool:
    reply = client.get("/api/v1/nodes?labelSelector=type%3Dkwok")
    if reply.status != 200:
        return False
    ready = 0
    for node in reply.json().get("items") or []:
        conditions = (node.get("status") or {}).get("conditions") or []
        if any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions):
            ready += 1
    return ready >= wanted


@contextlib.contextmanager
def running_control_plane(settings: ControlPlaneSettings) -> Iterator[ControlPlane]:
    """A started control plane for the block; stopped (every child) on exit."""
    plane = ControlPlane(settings=settings)
    plane.start()
    try:
        yield plane
    finally:
        plane.stop()
