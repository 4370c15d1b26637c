"""Istio adapter benchmarks: install time against kubectl, idle RSS, start-to-SERVING time.

Each round installs Istio (demo profile) into a fresh kubesim twice: once through the adapter
subprocess over gRPC (plan, apply, wait for readiness), once as `kubectl apply --server-side` of
the very objects the adapter's planner renders for that request (already rendered and labelled,
so kubectl does strictly less work: no rendering, no waiting). Then both do it again (the
adapter's re-install is a no-op; kubectl re-applies). The adapter keeps its cluster session
(connection pool, discovery) between operations and fills it while idle after start; kubectl is
measured likewise with its discovery cache filled for the server (`kubectl api-resources` first),
and once more from an empty cache. The adapter's time ends at the operation's final event on
StreamEvents. Ratios adapter / kubectl are printed per round with their medians (target <= 0.5
for the install), what the idle adapter asked the server, and what each install cost: API
requests by verb, CPU seconds of the client (adapter process or kubectl) and of kubesim, which
runs as its own process (a loaded machine turns CPU into wall time). The adapter's idle RSS
(VmRSS, target <= 120 MB) and spawn-to-SERVING time (target <= 1.5 s) are printed too. Numbers
only, no asserts on timing.
Uses the upstream charts from ../shared/fixtures when present, else our toy charts.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from adapters.kit.testing import (
    TERMINAL,
    AdapterClient,
    AdapterProcess,
)
from kubesim.harness import SimProcess, kubesim_process
from meshplane.adapter.v1 import adapter_pb2 as pb
from tests.bench.istio_workload import DEMO, adapter_args, istio_charts, rendered_install
from tests.bench.process_usage import cpu_seconds
from tests.plugins.static_http import StaticHttpServer

pytestmark = pytest.mark.bench

ADAPTER_COMMAND_ONLY = (
    sys.executable,
    "-c",
    "import argparse, sys\n"
    "from adapters.kit.process import cli\n"
    "parser = argparse.ArgumentParser(prog='meshplane')\n"
    "cli.register(parser.add_subparsers())\n"
    "args = parser.parse_args()\n"
    "sys.exit(args.run(args))\n",
    "adapter",
    "istio",
)
"""`meshplane adapter istio` without the other subcommands' modules (what the adapter itself
costs, when the console script imports every command module up front)."""

ROUNDS = 5
KUBECTL = shutil.which("kubectl") or "kubectl"
ServerFactory = Callable[[Path], StaticHttpServer]


@dataclass(frozen=True, kw_only=True)
class Cost:
    """What one install cost beside its wall time."""

    client_cpu: float
    """CPU seconds of the adapter process or of kubectl."""
    server_cpu: float
    """CPU seconds of the kubesim process."""
    requests: dict[str, int]
    """API requests kubesim answered, by verb."""

    @property
    def cpu(self) -> float:
        return self.client_cpu + self.server_cpu

    def line(self) -> str:
        verbs = " ".join(f"{verb} {n}" for verb, n in sorted(self.requests.items()))
        return (
            f"{sum(self.requests.values())} requests ({verbs}), CPU client {self.client_cpu:.3f}s"
            f" + kubesim {self.server_cpu:.3f}s"
        )


class ServerMeter:
    """kubesim's CPU and request counts between `start` and `stop`."""

    def __init__(self, sim: SimProcess) -> None:
        self._sim = sim
        self._cpu = 0.0
        self._requests: dict[str, int] = {}

    def _read(self) -> tuple[float, dict[str, int]]:
        with urllib.request.urlopen(f"{self._sim.url}/kubesim/stats", timeout=10) as answer:
            stats = json.loads(answer.read())
        requests = {str(verb): int(n) for verb, n in stats["requests"].items()}
        return self._sim.cpu_seconds(), requests

    def start(self) -> None:
        self._cpu, self._requests = self._read()

    def stop(self, client_cpu: float) -> Cost:
        cpu, requests = self._read()
        delta = {v: n - self._requests.get(v, 0) for v, n in requests.items()}
        return Cost(
            client_cpu=client_cpu,
            server_cpu=cpu - self._cpu,
            requests={v: n for v, n in delta.items() if n},
        )


def _kubectl_warm_discovery(sim: SimProcess, cache: Path) -> None:
    """Fill kubectl's discovery cache for this server (what a kubectl used before has)."""
    subprocess.run(
        [KUBECTL, "--kubeconfig", str(sim.kubeconfig), "--cache-dir", str(cache), "api-resources"],
        check=True,
        stdout=subprocess.DEVNULL,
    )


def _kubectl_apply(sim: SimProcess, manifest: Path, cache: Path) -> tuple[float, Cost]:
    command = [
        KUBECTL,
        "--kubeconfig",
        str(sim.kubeconfig),
        "--cache-dir",
        str(cache),
        "apply",
        "--server-side",
    ]
    meter = ServerMeter(sim)
    meter.start()
    started = time.perf_counter()
    child = subprocess.Popen(
        [*command, "-f", str(manifest)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    _, status, usage = os.wait4(child.pid, 0)
    seconds = time.perf_counter() - started
    child.returncode = os.waitstatus_to_exitcode(status)
    assert child.stderr is not None
    errors = child.stderr.read().decode()
    child.stderr.close()
    assert child.returncode == 0, errors
    return seconds, meter.stop(usage.ru_utime + usage.ru_stime)


@dataclass(frozen=True, kw_only=True)
class AdapterRun:
    """Timings of one fresh adapter process."""

    serving: float
    """Spawn to health SERVING, seconds."""
    rss: int
    """Idle VmRSS after SERVING, bytes."""
    install: float = 0.0
    """ApplyOperation install to SUCCEEDED, seconds."""
    cost: Cost | None = None
    """What the first install cost."""
    reinstall: float = 0.0
    """The same install again (a no-op), seconds."""
    warm_up: Cost | None = None
    """API requests between spawn and the first install (the session kept for operations)."""


async def _final_event(stream: Any) -> pb.Event:
    """The first event of the streamed operation that carries a final state."""
    async for reply in stream:
        if reply.event.operation_state in TERMINAL:
            event: pb.Event = reply.event
            return event
    raise AssertionError("the event stream ended before the operation did")


async def _adapter_install(
    args: list[str],
    log: Path,
    sim: SimProcess,
    version: str,
    *,
    command: tuple[str, ...] = (),
    install: bool = True,
) -> AdapterRun:
    """Start a fresh adapter, measure startup and idle RSS, then (optionally) install twice."""
    process = AdapterProcess([*args, "--kubeconfig", str(sim.kubeconfig)], log, command)
    spawned = time.perf_counter()
    process.start()
    client = AdapterClient(process.address)
    try:
        meter = ServerMeter(sim)
        meter.start()
        await client.wait_serving()
        serving = time.perf_counter() - spawned
        await asyncio.sleep(1.0)  # idle: nothing requested yet
        rss = process.rss_bytes()
        if not install:
            return AdapterRun(serving=serving, rss=rss)
        seconds: list[float] = []
        costs: list[Cost] = []
        warm_up = meter.stop(0.0)  # what the adapter asked while idle (connect, discovery)
        for attempt in ("first", "again"):
            operation_id = f"bench-install-{attempt}"
            # The end is the operation's final event, as `meshplane apply --wait` sees it.
            stream = client.stub.StreamEvents(pb.StreamEventsRequest(operation_id=operation_id))
            meter.start()
            cpu = cpu_seconds(process.pid)
            started = time.perf_counter()
            await client.apply(
                "install",
                operation_id=operation_id,
                mesh_version=version,
                parameters=DEMO,
            )
            final = await _final_event(stream)
            seconds.append(time.perf_counter() - started)
            costs.append(meter.stop(cpu_seconds(process.pid) - cpu))
            stream.cancel()
            assert final.operation_state == pb.OPERATION_STATE_SUCCEEDED, final.summary
        return AdapterRun(
            serving=serving,
            rss=rss,
            install=seconds[0],
            reinstall=seconds[1],
            cost=costs[0],
            warm_up=warm_up,
        )
    finally:
        await client.close()
        process.stop()


@dataclass(frozen=True, kw_only=True)
class Bench:
    """What every round shares: where it writes, the adapter's flags, the rendered manifest."""

    tmp: Path
    args: list[str]
    chart_url: str
    version: str
    manifest: Path


@dataclass(frozen=True, kw_only=True)
class Round:
    """One round: the adapter's run and kubectl's installs of the same objects."""

    adapter: AdapterRun
    kubectl: float
    """Server-side apply with a filled discovery cache, seconds."""
    kubectl_again: float
    kubectl_cost: Cost
    kubectl_cold: float
    """Server-side apply from an empty discovery cache, seconds."""


async def measure_round(bench: Bench, number: int) -> Round:
    """The adapter, then kubectl cold, then kubectl warm, each on a fresh kubesim."""
    tmp = bench.tmp
    with kubesim_process(tmp / f"sim-{number}-adapter") as sim:
        if number == 1:
            text = await rendered_install(
                sim.kubeconfig, bench.chart_url, tmp / "plan-cache", bench.version, DEMO
            )
            bench.manifest.write_text(text, encoding="utf-8")
        run = await _adapter_install(bench.args, tmp / f"adapter-{number}.log", sim, bench.version)
    with kubesim_process(tmp / f"sim-{number}-kubectl-cold") as sim:
        cache = tmp / f"kubectl-cache-{number}"
        cold, _ = await asyncio.to_thread(_kubectl_apply, sim, bench.manifest, cache)
    with kubesim_process(tmp / f"sim-{number}-kubectl") as sim:
        # Like the adapter, which read discovery while idle, kubectl starts with its
        # discovery cache filled for this server.
        cache = tmp / f"kubectl-warm-cache-{number}"
        await asyncio.to_thread(_kubectl_warm_discovery, sim, cache)
        kubectl, kubectl_cost = await asyncio.to_thread(_kubectl_apply, sim, bench.manifest, cache)
        kubectl_again, _ = await asyncio.to_thread(_kubectl_apply, sim, bench.manifest, cache)
    return Round(
        adapter=run,
        kubectl=kubectl,
        kubectl_again=kubectl_again,
        kubectl_cost=kubectl_cost,
        kubectl_cold=cold,
    )


async def measure_command_alone(bench: Bench) -> list[AdapterRun]:
    """The same adapter without the console script's other subcommand modules."""
    alone: list[AdapterRun] = []
    for number in range(1, 4):
        with kubesim_process(bench.tmp / f"sim-alone-{number}") as sim:
            alone.append(
                await _adapter_install(
                    bench.args,
                    bench.tmp / f"adapter-alone-{number}.log",
                    sim,
                    bench.version,
                    command=ADAPTER_COMMAND_ONLY,
                    install=False,
                )
            )
    return alone


def print_rounds(bench: Bench, rows: list[Round]) -> None:
    """Each round's times, ratios and costs."""
    objects = sum(1 for doc in yaml.safe_load_all(bench.manifest.read_text()) if doc)
    print()
    print(f"istio {bench.version} demo install, {objects} objects, kubesim ready_delay=0")
    print("round 1 renders the charts (cold cache); later rounds reuse the render cache")
    for number, row in enumerate(rows, start=1):
        run, kubectl, again = row.adapter, row.kubectl, row.kubectl_again
        print(
            f"round {number}: install adapter {run.install:.3f}s / kubectl --server-side "
            f"{kubectl:.3f}s = {run.install / kubectl:.2f}; again {run.reinstall:.3f}s / "
            f"{again:.3f}s = {run.reinstall / again:.2f}; start-to-SERVING {run.serving:.3f}s; "
            f"idle RSS {run.rss / 2**20:.1f} MB"
        )
    for number, row in enumerate(rows, start=1):
        run = row.adapter
        assert run.cost is not None and run.warm_up is not None
        print(f"round {number} idle adapter (connect, discovery): {run.warm_up.line()}")
        print(f"round {number} install: adapter {run.cost.line()}")
        print(f"round {number} install: kubectl {row.kubectl_cost.line()}")


def print_medians(rows: list[Round], alone: list[AdapterRun]) -> None:
    """Median ratios against kubectl (warm and cold), CPU, start-up and RSS against targets."""
    install = [row.adapter.install / row.kubectl for row in rows]
    cold_ratio = [row.adapter.install / row.kubectl_cold for row in rows]
    reinstall = [row.adapter.reinstall / row.kubectl_again for row in rows]
    kubectl_cold = [row.kubectl_cold for row in rows]
    print(
        f"median install ratio {statistics.median(install):.2f} (warm rounds "
        f"{statistics.median(install[1:]):.2f}; target <= 0.5); median re-install ratio "
        f"{statistics.median(reinstall):.2f}"
    )
    print(
        "against kubectl with an empty discovery cache (median "
        f"{statistics.median(kubectl_cold):.3f}s): median install ratio "
        f"{statistics.median(cold_ratio):.2f}"
    )
    adapter_cpu = [row.adapter.cost.cpu for row in rows if row.adapter.cost is not None]
    kubectl_cpu = [row.kubectl_cost.cpu for row in rows]
    print(
        f"median install CPU (client + kubesim): adapter {statistics.median(adapter_cpu):.3f}s, "
        f"kubectl {statistics.median(kubectl_cpu):.3f}s, ratio "
        f"{statistics.median(a / k for a, k in zip(adapter_cpu, kubectl_cpu, strict=True)):.2f}"
    )
    print(
        f"`meshplane adapter istio`: median start-to-SERVING "
        f"{statistics.median(row.adapter.serving for row in rows):.3f}s (target <= 1.5), max "
        f"idle RSS {max(row.adapter.rss for row in rows) / 2**20:.1f} MB (target <= 120)"
    )
    print(
        "adapter command module alone: median start-to-SERVING "
        f"{statistics.median(a.serving for a in alone):.3f}s, max idle RSS "
        f"{max(a.rss for a in alone) / 2**20:.1f} MB"
    )


@pytest.mark.timeout(600)
async def test_install_time_against_kubectl_rss_and_startup(
    tmp_path: Path, static_http_server: ServerFactory
) -> None:
    charts, mirror, version = istio_charts(tmp_path)
    chart_url = static_http_server(charts).url
    bench = Bench(
        tmp=tmp_path,
        args=adapter_args(chart_url, static_http_server(mirror).url, tmp_path / "adapter-cache"),
        chart_url=chart_url,
        version=version,
        manifest=tmp_path / "istio-demo.yaml",
    )
    rows = [await measure_round(bench, number) for number in range(1, ROUNDS + 1)]
    alone = await measure_command_alone(bench)
    print_rounds(bench, rows)
    print_medians(rows, alone)
