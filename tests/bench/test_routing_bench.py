"""Routed (client → coordinator → adapter) vs direct (client → adapter) unary GetInfo.

The coordinator runs as `meshplane coordinator` in its own process (one event loop: one core);
the client and the adapter share this test's loop on both paths, so the difference between the
paths is the coordinator's hop (passthrough of raw bytes). Latency is measured one call at a
time (p50/p99); throughput with concurrent callers for a fixed time. Printed as values, ratios
and differences; no timing asserts (targets: <= 0.5 ms added at p50, >= 2,000 routed req/s on
one core).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import statistics
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import grpc  # type: ignore[import-untyped, unused-ignore]
import grpc.aio  # type: ignore[import-untyped, unused-ignore]
import pytest

from coordinator.passthrough import MESH_METADATA_KEY
from meshplane.adapter.v1 import adapter_pb2 as apb
from meshplane.adapter.v1 import adapter_pb2_grpc as apb_grpc
from tests.coordinator.routing_harness import (
    ADAPTER_SERVICE,
    coordinator,
    fakes,
    make_settings,
    static,
)

pytestmark = pytest.mark.bench

LATENCY_CALLS = 2000
WARMUP_CALLS = 200
THROUGHPUT_SECONDS = 2.0
CONCURRENCY = 32

Call = Callable[[], Awaitable[Any]]


def _percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def _latencies(call: Call) -> list[float]:
    for _ in range(WARMUP_CALLS):
        await call()
    samples = []
    for _ in range(LATENCY_CALLS):
        started = time.perf_counter()
        await call()
        samples.append((time.perf_counter() - started) * 1000)
    return samples


async def _throughput(call: Call) -> tuple[float, int]:
    done = 0
    deadline = time.perf_counter() + THROUGHPUT_SECONDS

    async def worker() -> None:
        nonlocal done
        while time.perf_counter() < deadline:
            await call()
            done += 1

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    return done / (time.perf_counter() - started), done


def _cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of a process (Linux /proc), None where unavailable."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextlib.asynccontextmanager
async def _coordinator_process(tmp_path: Path, adapter: str) -> AsyncIterator[tuple[str, int]]:
    """`meshplane coordinator` on port 0; yields its address (first stdout line) and pid."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        "import sys; from meshplane_cli.main import main; sys.exit(main())",
        "coordinator",
        "--port=0",
        f"--adapter=istio={adapter}",
        f"--data-dir={tmp_path}",
        "--log-level=warning",
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert process.stdout is not None
        line = await asyncio.wait_for(process.stdout.readline(), 30)
        yield str(json.loads(line)["grpc"]), process.pid
    finally:
        process.terminate()
        await asyncio.wait_for(process.wait(), 30)


async def _wait_routable(stub: Any, metadata: Any) -> None:
    async with asyncio.timeout(20):
        while True:
            try:
                await stub.GetInfo(apb.GetInfoRequest(), metadata=metadata, timeout=1)
                return
            except grpc.aio.AioRpcError:
                await asyncio.sleep(0.05)


async def test_routed_vs_direct_getinfo(tmp_path: Path) -> None:
    async with (
        fakes(("istio", "bench")) as (adapter,),
        _coordinator_process(tmp_path, adapter.address) as (address, pid),
        grpc.aio.insecure_channel(address) as routed_channel,
        grpc.aio.insecure_channel(adapter.address) as direct_channel,
    ):
        direct_stub = apb_grpc.MeshAdapterServiceStub(direct_channel)
        routed_stub = apb_grpc.MeshAdapterServiceStub(routed_channel)
        metadata = ((MESH_METADATA_KEY, "istio"),)
        await _wait_routable(routed_stub, metadata)

        async def direct() -> Any:
            return await direct_stub.GetInfo(apb.GetInfoRequest(), timeout=5)

        async def routed() -> Any:
            return await routed_stub.GetInfo(apb.GetInfoRequest(), metadata=metadata, timeout=5)

        assert (await routed()).mesh == (await direct()).mesh == "istio"
        direct_ms = await _latencies(direct)
        routed_ms = await _latencies(routed)
        direct_rps, _ = await _throughput(direct)
        cpu_before = _cpu_seconds(pid)
        routed_rps, routed_calls = await _throughput(routed)
        cpu_after = _cpu_seconds(pid)

    rows = []
    for name, q in (("p50", 0.50), ("p99", 0.99)):
        d, r = _percentile(direct_ms, q), _percentile(routed_ms, q)
        rows.append(
            f"{name}: direct {d:.3f} ms  routed {r:.3f} ms  added {r - d:+.3f} ms  x{r / d:.2f}"
        )
    rows.append(
        f"mean: direct {statistics.fmean(direct_ms):.3f} ms  "
        f"routed {statistics.fmean(routed_ms):.3f} ms"
    )
    rows.append(
        f"req/s ({CONCURRENCY} concurrent): direct {direct_rps:,.0f}  "
        f"routed {routed_rps:,.0f}  routed/direct {routed_rps / direct_rps:.2f}"
    )
    if cpu_before is not None and cpu_after is not None and cpu_after > cpu_before:
        per_call = (cpu_after - cpu_before) / routed_calls
        rows.append(
            f"coordinator CPU per routed call {per_call * 1e6:.0f} us "
            f"=> {1 / per_call:,.0f} routed req/s per coordinator core"
        )
    print("\nrouted vs direct unary GetInfo (coordinator in its own process)")
    for row in rows:
        print("  " + row)


async def _cpu_per_call(call: Call, calls: int = 3000) -> float:
    """Process CPU microseconds per call (client, servers and gRPC threads of this process)."""
    for _ in range(WARMUP_CALLS):
        await call()
    per_worker = calls // 8

    async def worker() -> None:
        for _ in range(per_worker):
            await call()

    started = time.process_time()
    await asyncio.gather(*(worker() for _ in range(8)))
    return (time.process_time() - started) / (per_worker * 8) * 1e6


async def test_coordinator_hop_vs_a_bare_grpc_proxy(tmp_path: Path) -> None:
    """What the coordinator's own logic costs on top of the gRPC hop itself.

    In one process: direct calls, calls through a bare raw-bytes ``grpc.aio`` proxy (a generic
    handler forwarding to one fixed channel, nothing else), and calls through the coordinator's
    passthrough. CPU per call: (bare - direct) is the cost of any hop, (routed - bare) is the
    coordinator's (metadata, replica choice, deadline, retry policy).
    """
    async with (
        fakes(("istio", "bench")) as (adapter,),
        coordinator(make_settings(tmp_path, adapters=static(adapter))) as client,
        grpc.aio.insecure_channel(adapter.address) as upstream,
    ):
        await client.wait_serving(adapter.address)
        forward_call = upstream.unary_unary(f"/{ADAPTER_SERVICE}/GetInfo")

        async def forward(request: bytes, context: Any) -> Any:
            return await forward_call(request, timeout=context.time_remaining())

        bare = grpc.aio.server()
        bare.add_generic_rpc_handlers(
            (
                grpc.method_handlers_generic_handler(
                    ADAPTER_SERVICE, {"GetInfo": grpc.unary_unary_rpc_method_handler(forward)}
                ),
            )
        )
        port = bare.add_insecure_port("127.0.0.1:0")
        await bare.start()
        try:
            async with (
                grpc.aio.insecure_channel(adapter.address) as direct_channel,
                grpc.aio.insecure_channel(f"127.0.0.1:{port}") as bare_channel,
            ):
                direct_stub = apb_grpc.MeshAdapterServiceStub(direct_channel)
                bare_stub = apb_grpc.MeshAdapterServiceStub(bare_channel)
                metadata = ((MESH_METADATA_KEY, "istio"),)
                request = apb.GetInfoRequest()
                direct_us = await _cpu_per_call(lambda: direct_stub.GetInfo(request, timeout=5))
                bare_us = await _cpu_per_call(lambda: bare_stub.GetInfo(request, timeout=5))
                routed_us = await _cpu_per_call(
                    lambda: client.adapter_stub.GetInfo(request, metadata=metadata, timeout=5)
                )
        finally:
            await bare.stop(0)
    print("\nCPU per unary GetInfo, everything in one process")
    print(
        f"  direct {direct_us:.0f} us  bare proxy {bare_us:.0f} us  coordinator {routed_us:.0f} us"
    )
    print(
        f"  any gRPC hop +{bare_us - direct_us:.0f} us; coordinator logic on top of it "
        f"{routed_us - bare_us:+.0f} us ({(routed_us - bare_us) / (bare_us - direct_us):+.0%})"
    )
