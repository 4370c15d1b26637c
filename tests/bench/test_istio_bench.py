"""Istio adapter benchmarks: install time against kubectl, idle RSS, start-to-SERVING time.

Each round installs Istio (demo profile) into a fresh kubesim twice: once through the adapter
subprocess over gRPC (plan, apply, wait for readiness), once as `kubectl apply --server-side` of
the very objects the adapter's planner renders for that request (already rendered and labelled,
so kubectl does strictly less work: no rendering, no waiting). Then both do it again (the
adapter's re-install is a no-op; kubectl re-applies). Ratios adapter / kubectl are printed per
round with their medians (target <= 0.5 for the install). The adapter's idle RSS (VmRSS, target
<= 120 MB) and spawn-to-SERVING time (target <= 1.5 s) are printed too. Numbers only, no asserts
on timing. Uses the upstream charts from ../shared/fixtures when present, else our toy charts.
"""

from __future__ import annotations

import asyncio
import shutil
import statistics
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml

from adapters.istio.declaration import DECLARATION
from adapters.kit.applying import labelled
from adapters.kit.chart_repository import ChartRepository
from adapters.kit.cluster import ClusterSession
from adapters.kit.objects import KubeObject
from adapters.kit.operations import OperationRecord, OperationState
from adapters.kit.planning import ManifestLibrary, Planner
from kubesim.harness import running_kubesim
from kubesim.server import SimConfig
from meshplane.adapter.v1 import adapter_pb2 as pb
from tests.adapters.istio.adapter_process import (
    ADAPTER_COMMAND_ONLY,
    AdapterClient,
    AdapterProcess,
)
from tests.adapters.istio.toy_istio import TOY_MIRROR, package_toy_repo
from tests.fixtures_paths import SHARED_FIXTURES
from tests.plugins.static_http import StaticHttpServer

pytestmark = pytest.mark.bench

ROUNDS = 5
SIM = SimConfig(ready_delay=0.0, bookmark_seconds=0.2)
KUBECTL = shutil.which("kubectl") or "kubectl"
ServerFactory = Callable[[Path], StaticHttpServer]


def _charts(tmp_path: Path) -> tuple[Path, Path, str]:
    """(chart repo dir, mirror dir, version): upstream when available, else the toy charts."""
    if (SHARED_FIXTURES / "README.md").is_file():
        return SHARED_FIXTURES / "charts" / "istio", SHARED_FIXTURES, "1.30.3"
    return package_toy_repo(tmp_path / "toy-charts"), TOY_MIRROR, "1.1.0"


def _record(version: str) -> OperationRecord:
    return OperationRecord(
        operation_id="bench",
        operation="install",
        mesh="istio",
        mesh_version=version,
        namespace="istio-system",
        delete=False,
        parameters={"profile": "demo"},
        username="bench",
        state=OperationState.RUNNING,
        clusters=("default",),
        create_time=datetime.now(UTC),
    )


async def _rendered(kubeconfig: Path, chart_url: str, cache: Path, version: str) -> str:
    """The adapter's plan for install/demo as one YAML stream, namespace first."""
    spec = DECLARATION.operation("install")
    assert spec is not None
    planner = Planner(
        DECLARATION,
        charts=ChartRepository(chart_url, cache),
        manifests=ManifestLibrary(upstream_url=DECLARATION.manifests_url, cache_dir=cache),
    )
    async with await ClusterSession.connect(kubeconfig_path=kubeconfig) as session:
        plan = await planner.plan(spec, _record(version), session)
    namespace: KubeObject = {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": plan.namespace},
    }
    objects = [namespace, *(labelled(obj, plan.release) for obj in plan.objects)]
    return yaml.safe_dump_all(objects, sort_keys=False)


def _kubectl_apply(kubeconfig: Path, manifest: Path) -> float:
    started = time.perf_counter()
    subprocess.run(
        [KUBECTL, "--kubeconfig", str(kubeconfig), "apply", "--server-side", "-f", str(manifest)],
        check=True,
        capture_output=True,
        timeout=120,
    )
    return time.perf_counter() - started


@dataclass(frozen=True, kw_only=True)
class AdapterRun:
    """Timings of one fresh adapter process."""

    serving: float
    """Spawn to health SERVING, seconds."""
    rss: int
    """Idle VmRSS after SERVING, bytes."""
    install: float = 0.0
    """ApplyOperation install to SUCCEEDED, seconds."""
    reinstall: float = 0.0
    """The same install again (a no-op), seconds."""


async def _adapter_install(
    args: list[str],
    log: Path,
    kubeconfig: Path,
    version: str,
    *,
    command: tuple[str, ...] = (),
    install: bool = True,
) -> AdapterRun:
    """Start a fresh adapter, measure startup and idle RSS, then (optionally) install twice."""
    process = AdapterProcess([*args, "--kubeconfig", str(kubeconfig)], log, command)
    spawned = time.perf_counter()
    process.start()
    client = AdapterClient(process.address)
    try:
        await client.wait_serving()
        serving = time.perf_counter() - spawned
        await asyncio.sleep(1.0)  # idle: nothing requested yet
        rss = process.rss_bytes()
        if not install:
            return AdapterRun(serving=serving, rss=rss)
        seconds: list[float] = []
        for attempt in ("first", "again"):
            started = time.perf_counter()
            done = await client.run(
                "install",
                operation_id=f"bench-install-{attempt}",
                mesh_version=version,
                parameters={"profile": "demo"},
            )
            seconds.append(time.perf_counter() - started)
            assert done.state == pb.OPERATION_STATE_SUCCEEDED
        return AdapterRun(serving=serving, rss=rss, install=seconds[0], reinstall=seconds[1])
    finally:
        await client.close()
        process.stop()


@pytest.mark.timeout(600)
async def test_install_time_against_kubectl_rss_and_startup(
    tmp_path: Path, static_http_server: ServerFactory
) -> None:
    charts, mirror, version = _charts(tmp_path)
    chart_url = static_http_server(charts).url
    args = [
        "--port",
        "0",
        "--chart-repo",
        chart_url,
        "--manifests-url",
        static_http_server(mirror).url,
        "--cache-dir",
        str(tmp_path / "adapter-cache"),
        "--log-level",
        "warning",
    ]
    manifest = tmp_path / "istio-demo.yaml"
    rows: list[tuple[AdapterRun, float, float]] = []
    for number in range(1, ROUNDS + 1):
        with running_kubesim(SIM) as sim:
            if number == 1:
                text = await _rendered(sim.kubeconfig, chart_url, tmp_path / "plan-cache", version)
                manifest.write_text(text, encoding="utf-8")
            run = await _adapter_install(
                args, tmp_path / f"adapter-{number}.log", sim.kubeconfig, version
            )
        with running_kubesim(SIM) as sim:
            kubectl = await asyncio.to_thread(_kubectl_apply, sim.kubeconfig, manifest)
            kubectl_again = await asyncio.to_thread(_kubectl_apply, sim.kubeconfig, manifest)
        rows.append((run, kubectl, kubectl_again))

    # The same adapter without the console script's other subcommand modules.
    alone: list[AdapterRun] = []
    for number in range(1, 4):
        with running_kubesim(SIM) as sim:
            alone.append(
                await _adapter_install(
                    args,
                    tmp_path / f"adapter-alone-{number}.log",
                    sim.kubeconfig,
                    version,
                    command=ADAPTER_COMMAND_ONLY,
                    install=False,
                )
            )

    objects = sum(1 for doc in yaml.safe_load_all(manifest.read_text()) if doc)
    print()
    print(f"istio {version} demo install, {objects} objects, kubesim ready_delay=0")
    print("round 1 renders the charts (cold cache); later rounds reuse the render cache")
    for number, (run, kubectl, again) in enumerate(rows, start=1):
        print(
            f"round {number}: install adapter {run.install:.3f}s / kubectl --server-side "
            f"{kubectl:.3f}s = {run.install / kubectl:.2f}; again {run.reinstall:.3f}s / "
            f"{again:.3f}s = {run.reinstall / again:.2f}; start-to-SERVING {run.serving:.3f}s; "
            f"idle RSS {run.rss / 2**20:.1f} MB"
        )
    install = [run.install / kubectl for run, kubectl, _ in rows]
    reinstall = [run.reinstall / again for run, _, again in rows]
    print(
        f"median install ratio {statistics.median(install):.2f} (warm rounds "
        f"{statistics.median(install[1:]):.2f}; target <= 0.5); median re-install ratio "
        f"{statistics.median(reinstall):.2f}"
    )
    print(
        f"`meshplane adapter istio`: median start-to-SERVING "
        f"{statistics.median(run.serving for run, _, _ in rows):.3f}s (target <= 1.5), max idle "
        f"RSS {max(run.rss for run, _, _ in rows) / 2**20:.1f} MB (target <= 120)"
    )
    print(
        "adapter command module alone: median start-to-SERVING "
        f"{statistics.median(a.serving for a in alone):.3f}s, max idle RSS "
        f"{max(a.rss for a in alone) / 2**20:.1f} MB"
    )
