"""Real server processes for the hostile-request tests, each recording what it starts and opens.

`running_servers` starts kubesim, the toy Istio chart repository and mirror, the Istio adapter
(`meshplane adapter istio`) and a coordinator (`meshplane coordinator`) routing to it, plus a
loopback HTTP server performance tests may target. Both meshplane servers run with
``MESHPLANE_TEST_AUDIT_LOG`` (`serving.audit_log`), so a test can list every program they
started and every file they opened, and when.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from adapters.kit.testing import MESHPLANE, AdapterProcess
from kubesim.harness import kubesim_process
from serving.audit_log import AUDIT_LOG_ENV
from tests.adapters.istio.toy_istio import TOY_MIRROR, package_toy_repo
from tests.coordinator.perf.conftest import LoopbackServer, running_server
from tests.plugins.static_http import StaticHttpServer

PROGRAM_EVENTS = frozenset(
    {"subprocess.Popen", "os.system", "os.exec", "os.posix_spawn", "os.spawn", "os.fork"}
)
CODE_SUFFIXES = (".py", ".pyc", ".so", ".pth")


@dataclass(kw_only=True)
class AuditedServer:
    """One meshplane server process and its audit log."""

    name: str
    process: AdapterProcess
    audit_log: Path
    own_dirs: tuple[Path, ...]
    """Directories the server was told to keep its state in (writing there is its job)."""
    _read: int = 0
    baseline: set[str] = field(default_factory=set)

    @property
    def address(self) -> str:
        return self.process.address

    def events(self) -> list[dict[str, Any]]:
        """Audit events recorded since the previous call."""
        text = self.audit_log.read_text(encoding="utf-8")
        fresh, self._read = text[self._read :], len(text)
        complete, _, rest = fresh.rpartition("\n")
        self._read -= len(rest)  # a line still being written is read next time
        return [json.loads(line) for line in complete.splitlines() if line.strip()]

    def take_baseline(self) -> None:
        """Remember every file opened so far (start-up, and benign requests before attacks)."""
        for event in self.events():
            if event["event"] == "open":
                self.baseline.add(str(event["target"]))

    def surprises(self) -> list[dict[str, Any]]:
        """Programs started, and files opened outside the baseline, since the last call.

        Reading Python code the interpreter imports, and writing inside the server's own state
        directories, are what a server does; anything else a request caused is a finding.
        """
        found = []
        for event in self.events():
            kind, target = event["event"], str(event.get("target"))
            if kind in PROGRAM_EVENTS:
                found.append(event)
            elif kind == "open":
                if isinstance(event.get("target"), int):
                    continue  # os.fdopen of a descriptor whose own open was recorded by path
                if target in self.baseline or target.endswith(CODE_SUFFIXES):
                    continue
                if any(Path(target).is_relative_to(own) for own in self.own_dirs):
                    continue
                found.append(event)
        return found

    def serving(self) -> bool:
        """True when grpc.health.v1 says SERVING."""
        with grpc.insecure_channel(self.address) as channel:
            reply = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(), timeout=5
            )
        return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)


@dataclass(kw_only=True)
class Servers:
    """The running set."""

    adapter: AuditedServer
    coordinator: AuditedServer
    perf_target: LoopbackServer
    kubeconfig: Path


def start_adapter(
    stack: contextlib.ExitStack, tmp: Path, kubeconfig: Path, charts: str, mirror: str
) -> AuditedServer:
    """`meshplane adapter istio` on kubesim and the chart servers, stopped with ``stack``."""
    adapter_dirs = (tmp / "adapter-state", tmp / "adapter-cache")
    adapter = AuditedServer(
        name="adapter",
        audit_log=tmp / "adapter-audit.jsonl",
        own_dirs=adapter_dirs,
        process=AdapterProcess(
            [
                "--port", "0",
                "--kubeconfig", str(kubeconfig),
                "--chart-repo", charts,
                "--manifests-url", mirror,
                "--state-dir", str(adapter_dirs[0]),
                "--cache-dir", str(adapter_dirs[1]),
                "--operation-timeout", "60",
            ],
            tmp / "adapter.log",
            env={AUDIT_LOG_ENV: str(tmp / "adapter-audit.jsonl")},
        ),
    )  # fmt: skip
    adapter.process.start()
    stack.callback(adapter.process.stop)
    return adapter


def start_coordinator(
    stack: contextlib.ExitStack, tmp: Path, adapter: str, extra_args: Sequence[str]
) -> AuditedServer:
    """`meshplane coordinator` routing Istio to ``adapter``, stopped with ``stack``."""
    coordinator_dir = tmp / "coordinator"
    coordinator = AuditedServer(
        name="coordinator",
        audit_log=tmp / "coordinator-audit.jsonl",
        own_dirs=(coordinator_dir,),
        process=AdapterProcess(
            [
                "--port", "0",
                "--data-dir", str(coordinator_dir),
                "--adapter", f"istio={adapter}",
                "--shutdown-grace", "5",
                "--allow-anonymous",
                *extra_args,
            ],
            tmp / "coordinator.log",
            command=[str(MESHPLANE), "coordinator"],
            env={
                AUDIT_LOG_ENV: str(tmp / "coordinator-audit.jsonl"),
                "MESHPLANE_COORDINATOR_LOG_FORMAT": "json",
            },
        ),
    )  # fmt: skip
    coordinator.process.start()
    stack.callback(coordinator.process.stop)
    return coordinator


@contextlib.contextmanager
def running_servers(tmp: Path, *, coordinator_args: Sequence[str] = ()) -> Iterator[Servers]:
    """kubesim, chart servers, the Istio adapter and a coordinator, for a ``with`` block."""
    with contextlib.ExitStack() as stack:
        # kubesim in its own process: the test process's random state stays hypothesis's own
        sim = stack.enter_context(kubesim_process(tmp / "kubesim"))
        charts = StaticHttpServer(package_toy_repo(tmp / "charts"))
        stack.callback(charts.stop)
        mirror = StaticHttpServer(TOY_MIRROR)
        stack.callback(mirror.stop)
        perf_target = stack.enter_context(running_server("http"))
        adapter = start_adapter(stack, tmp, sim.kubeconfig, charts.url, mirror.url)
        coordinator = start_coordinator(stack, tmp, adapter.address, coordinator_args)
        _wait_for_adapter(coordinator.address)
        yield Servers(
            adapter=adapter,
            coordinator=coordinator,
            perf_target=perf_target,
            kubeconfig=sim.kubeconfig,
        )


def _wait_for_adapter(coordinator: str, within: float = 20.0) -> None:
    """Until the coordinator routes to the adapter (its replica is SERVING)."""
    from meshplane.coordinator.v1 import coordinator_pb2 as cpb
    from meshplane.coordinator.v1 import coordinator_pb2_grpc as cpb_grpc

    deadline = time.monotonic() + within
    with grpc.insecure_channel(coordinator) as channel:
        stub = cpb_grpc.CoordinatorServiceStub(channel)
        while time.monotonic() < deadline:
            reply = stub.ListAdapters(cpb.ListAdaptersRequest(), timeout=5)
            if any(
                replica.state == cpb.REPLICA_STATE_SERVING
                for adapter in reply.adapters
                for replica in adapter.replicas
            ):
                return
            time.sleep(0.05)
    raise TimeoutError("the coordinator never saw the adapter SERVING")
