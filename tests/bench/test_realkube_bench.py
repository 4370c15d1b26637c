"""Istio on the real API server: the adapter against kubectl, and kubesim against the real server.

Runs only inside a loopback-only network namespace with the `make kube` binaries (`make bench`
runs it there through scripts/kube-test.sh; anywhere else it skips, saying why). One real
control plane (Kubernetes v1.37.2: etcd, kube-apiserver, controller manager, scheduler, kwok with
two fake Nodes) and one kubesim process (ready_delay 0) serve every round. Each round installs
Istio on each server twice and removes it after each install (not timed). The minimal profile
(istiod and the CRDs): the demo profile's gateways are injected Pods, which cannot be created
on the real server here (nothing answers the injector webhook).

- through the adapter process over gRPC (`meshplane adapter istio`, one process per server for
  the whole run, so its cluster session and render cache are warm after round 1);
- with kubectl (the `make kube` v1.37.2 binary, discovery cache filled first) from the objects
  the adapter's own planner renders for that request (`istio_workload`), so both write the same.

Two times per install, compared like with like:

- apply (objects accepted): the adapter from ApplyOperation until the last "<object> applied"
  event arrives on StreamEvents (tiers in order, objects of a tier concurrently, CRDs Established
  before what follows); kubectl `apply --server-side -f` (one object after another);
- whole install (ready): the adapter until the operation's final event (it waits for readiness
  as Helm does); kubectl apply followed by the waits a script would run (`kubectl_install`).

Printed: per round and median, adapter / kubectl for both (the issue's goal: <= 0.5), real /
kubesim for the same installs (the simulator's speed against the real server's), and the CPU
of the clients and of the servers (the control plane's processes; kubesim's). No asserts on
timing.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from adapters.kit.testing import TERMINAL, AdapterClient, AdapterProcess
from kubesim.harness import kubesim_process
from meshplane.adapter.v1 import adapter_pb2 as pb
from realkube.control_plane import ControlPlane
from tests.bench.istio_workload import MINIMAL, adapter_args, istio_charts, rendered_install
from tests.bench.kubectl_install import (
    Kubectl,
    KubectlInstall,
    kubectl_install,
    kubectl_remove,
    wait_commands,
)
from tests.bench.process_usage import cpu_seconds
from tests.plugins.static_http import StaticHttpServer

pytestmark = [pytest.mark.bench, pytest.mark.realkube]

ROUNDS = 3
NAMESPACE = "istio-system"
ServerFactory = Callable[[Path], StaticHttpServer]


@dataclass(frozen=True, kw_only=True)
class Server:
    """One API server under test and how to read its CPU."""

    name: str
    kubeconfig: Path
    cpu: Callable[[], float]
    """CPU seconds its processes used so far."""


@dataclass(frozen=True, kw_only=True)
class Install:
    """One timed install (adapter or kubectl) on one server."""

    apply: float
    ready: float
    client_cpu: float
    server_cpu: float
    objects: int = 0
    """Objects the adapter reported applied (0 for kubectl)."""


class Adapter:
    """One Istio adapter process on one server (a fresh one for each install)."""

    def __init__(self, args: list[str], server: Server, log: Path) -> None:
        self.server = server
        self.process = AdapterProcess([*args, "--kubeconfig", str(server.kubeconfig)], log).start()
        self.client = AdapterClient(self.process.address)
        self.client.wait_seconds = 600.0

    async def install(self, version: str) -> Install:
        """Install and time it: last `applied` event, final event."""
        operation_id = "bench-install"
        stream = self.client.stub.StreamEvents(pb.StreamEventsRequest(operation_id=operation_id))
        cpu, server_cpu = cpu_seconds(self.process.pid), self.server.cpu()
        started = time.perf_counter()
        await self.client.apply(
            "install", operation_id=operation_id, mesh_version=version, parameters=MINIMAL
        )
        applied, last_applied = 0, 0.0
        async for reply in stream:
            event = reply.event
            if event.component and event.summary.endswith(" applied"):
                applied += 1
                last_applied = time.perf_counter() - started
            if event.operation_state in TERMINAL:
                break
        ready = time.perf_counter() - started
        stream.cancel()
        assert event.operation_state == pb.OPERATION_STATE_SUCCEEDED, event.details
        return Install(
            apply=last_applied,
            ready=ready,
            client_cpu=cpu_seconds(self.process.pid) - cpu,
            server_cpu=self.server.cpu() - server_cpu,
            objects=applied,
        )

    async def uninstall(self) -> None:
        await self.client.run("install", operation_id="bench-uninstall", delete=True)

    async def close(self) -> None:
        await self.client.close()
        self.process.stop()


async def _adapter_install(
    args: list[str], server: Server, log: Path, version: str, *, uninstall: bool
) -> Install:
    """A fresh adapter, idle for a second (it connects and reads discovery, as a running
    adapter has), installs; then (``uninstall``) removes the release again, not timed."""
    adapter = Adapter(args, server, log)
    try:
        await adapter.client.wait_serving()
        await asyncio.sleep(1.0)
        done = await adapter.install(version)
        if uninstall:
            await adapter.uninstall()
        return done
    finally:
        await adapter.close()


def _timed_kubectl(kubectl: Kubectl, server: Server, manifest: Path, *, wait: bool) -> Install:
    before = server.cpu()
    done: KubectlInstall = kubectl_install(kubectl, manifest, wait=wait)
    return Install(
        apply=done.apply,
        ready=done.ready,
        client_cpu=done.cpu,
        server_cpu=server.cpu() - before,
    )


def _namespace_gone(kubectl: Kubectl) -> None:
    """The adapter's uninstall leaves the release namespace (it created it bare): remove it,
    so every install starts from the same empty cluster."""
    kubectl.run("delete", "namespace", NAMESPACE, "--ignore-not-found", "--wait", "--timeout=300s")


@contextmanager
def _kubesim(directory: Path) -> Iterator[Server]:
    """A fresh kubesim process (ready_delay 0)."""
    with kubesim_process(directory) as sim:
        yield Server(name="kubesim", kubeconfig=sim.kubeconfig, cpu=sim.cpu_seconds)


def _real(plane: ControlPlane) -> Server:
    def cpu() -> float:
        return sum(cpu_seconds(pid) for pid in plane.pids())

    return Server(name="real", kubeconfig=plane.kubeconfig, cpu=cpu)


@dataclass(kw_only=True)
class Rounds:
    """Every round's installs on one server."""

    adapter: list[Install] = field(default_factory=list)
    kubectl: list[Install] = field(default_factory=list)


@dataclass(frozen=True, kw_only=True)
class Bench:
    """What every install of the run shares."""

    args: Callable[[str], list[str]]
    """Adapter arguments, given the server's name (each server has its own cache dir)."""
    binary: Path
    manifest: Path
    version: str
    directory: Path


async def _real_round(bench: Bench, server: Server, number: int, found: Rounds) -> None:
    """The adapter's install and kubectl's (apply and waits), each removed again after; who
    goes first alternates (a server may be faster the second time round)."""
    kubectl = Kubectl(
        binary=bench.binary, kubeconfig=server.kubeconfig, cache=bench.directory / "kc"
    )
    await asyncio.to_thread(kubectl.warm_discovery)
    for adapter_first in (True, False) if number % 2 else (False, True):
        if adapter_first:
            log = bench.directory / f"adapter-real-{number}.log"
            found.adapter.append(
                await _adapter_install(
                    bench.args("real"), server, log, bench.version, uninstall=True
                )
            )
        else:
            found.kubectl.append(
                await asyncio.to_thread(_timed_kubectl, kubectl, server, bench.manifest, wait=True)
            )
            await asyncio.to_thread(kubectl_remove, kubectl, bench.manifest)
        await asyncio.to_thread(_namespace_gone, kubectl)


async def _kubesim_round(bench: Bench, number: int, found: Rounds) -> None:
    """The adapter's install and kubectl's (apply and waits), each on a fresh kubesim."""
    with _kubesim(bench.directory / f"sim-{number}-adapter") as server:
        log = bench.directory / f"adapter-kubesim-{number}.log"
        found.adapter.append(
            await _adapter_install(
                bench.args("kubesim"), server, log, bench.version, uninstall=False
            )
        )
    with _kubesim(bench.directory / f"sim-{number}-kubectl") as server:
        cache = bench.directory / f"kc-sim-{number}"
        kubectl = Kubectl(binary=bench.binary, kubeconfig=server.kubeconfig, cache=cache)
        await asyncio.to_thread(kubectl.warm_discovery)
        found.kubectl.append(
            await asyncio.to_thread(_timed_kubectl, kubectl, server, bench.manifest, wait=True)
        )


def _median(values: list[float]) -> float:
    return statistics.median(values)


def _ratios(top: list[Install], bottom: list[Install], field: str) -> list[float]:
    return [getattr(a, field) / getattr(b, field) for a, b in zip(top, bottom, strict=True)]


def _line(a: Install, k: Install) -> str:
    return (
        f"apply adapter {a.apply:.3f}s / kubectl {k.apply:.3f}s = {a.apply / k.apply:.2f}; "
        f"whole install adapter {a.ready:.3f}s / kubectl apply+waits {k.ready:.3f}s = "
        f"{a.ready / k.ready:.2f}; CPU adapter {a.client_cpu:.2f}s + server "
        f"{a.server_cpu:.2f}s, kubectl {k.client_cpu:.2f}s + server {k.server_cpu:.2f}s"
    )


def _report(version: str, objects: int, waits: int, real: Rounds, sim: Rounds) -> None:
    print()
    print(
        f"istio {version} minimal install, {objects} objects ({real.adapter[0].objects} applied "
        f"events from the adapter); real API server: Kubernetes v1.37.2 with kwok, 2 fake Nodes; "
        f"kubesim: ready_delay 0; kubectl: apply --server-side, then {waits} wait commands"
    )
    print("round 1: the adapter renders the charts (cold cache); later rounds reuse its render")
    for name, found in (("real", real), ("kubesim", sim)):
        for number, (a, k) in enumerate(zip(found.adapter, found.kubectl, strict=True), start=1):
            print(f"{name} round {number}: {_line(a, k)}")
    for name, found in (("real", real), ("kubesim", sim)):
        apply = _ratios(found.adapter, found.kubectl, "apply")
        ready = _ratios(found.adapter, found.kubectl, "ready")
        goal = "; goal <= 0.5" if found is real else ""
        print(
            f"{name}: median apply ratio adapter/kubectl {_median(apply):.2f} (rounds 2+ "
            f"{_median(apply[1:]):.2f}{goal}); median whole-install ratio (adapter / kubectl "
            f"apply+waits) {_median(ready):.2f} (rounds 2+ {_median(ready[1:]):.2f})"
        )
    for client in ("kubectl", "adapter"):
        mine_real: list[Install] = getattr(real, client)
        mine_sim: list[Install] = getattr(sim, client)
        parts = [
            f"{what} {_median([getattr(i, what) for i in mine_real]):.3f}s / "
            f"{_median([getattr(i, what) for i in mine_sim]):.3f}s = "
            f"{_median(_ratios(mine_real, mine_sim, what)):.2f}"
            for what in ("apply", "ready")
        ]
        print(
            f"real/kubesim, {client} (medians): {'; '.join(parts)}; server CPU per install "
            f"{_median([i.server_cpu for i in mine_real]):.2f}s / "
            f"{_median([i.server_cpu for i in mine_sim]):.2f}s"
        )


@pytest.mark.timeout(1800)
async def test_istio_install_on_the_real_server_against_kubectl_and_kubesim(
    real_kube: ControlPlane, tmp_path: Path, static_http_server: ServerFactory
) -> None:
    charts, mirror, version = istio_charts(tmp_path)
    chart_url = static_http_server(charts).url
    mirror_url = static_http_server(mirror).url
    manifest = tmp_path / "istio-minimal.yaml"
    manifest.write_text(
        await rendered_install(
            real_kube.kubeconfig, chart_url, tmp_path / "plan-cache", version, MINIMAL
        ),
        encoding="utf-8",
    )

    def args(server: str) -> list[str]:
        cache = tmp_path / f"cache-{server}"
        return [*adapter_args(chart_url, mirror_url, cache), "--operation-timeout", "600"]

    bench = Bench(
        args=args,
        binary=real_kube.settings.binaries.kubectl,
        manifest=manifest,
        version=version,
        directory=tmp_path,
    )
    real, sim = Rounds(), Rounds()
    server = _real(real_kube)
    for number in range(1, ROUNDS + 1):
        await _real_round(bench, server, number, real)
        await _kubesim_round(bench, number, sim)
    objects = sum(1 for doc in yaml.safe_load_all(manifest.read_text()) if doc)
    _report(version, objects, len(wait_commands(manifest)), real, sim)
