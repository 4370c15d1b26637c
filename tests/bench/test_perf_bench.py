"""Benchmarks of the built-in load generator: max req/s vs wrk on the same server, and gRPC req/s.

Both HTTP generators use one thread (wrk -t1) and the same connection count against the same
loopback server process in the same run, in alternating rounds so a noisy neighbour hits both;
the per-round ratios built-in / wrk and their median are printed (goal >= 0.5). Numbers only:
no timing asserts.
"""

from __future__ import annotations

import statistics
import time

import pytest

from coordinator.perf import (
    ClientConfig,
    LoadGenerator,
    PerformanceResult,
    Protocol,
    TestConfig,
    new_id,
    run_builtin,
    run_wrk,
    wrk_path,
)
from tests.coordinator.perf.conftest import start_server, stop_server

pytestmark = pytest.mark.bench

DURATION_S = 5.0
ROUNDS = 3
ROUND_S = 2.0
CONNECTIONS = 16


def _line(name: str, result: PerformanceResult) -> str:
    lat = result.latencies
    return (
        f"{name:<22} {result.actual_qps:>10.0f} req/s  p50 {lat.p50_ms:.3f} ms  "
        f"p99 {lat.p99_ms:.3f} ms  errors {result.error_count}"
    )


def _http_config(url: str, generator: LoadGenerator) -> TestConfig:
    client = ClientConfig(
        protocol=Protocol.HTTP,
        endpoint_urls=(url,),
        connections=CONNECTIONS,
        load_generator=generator,
    )
    return TestConfig(id=new_id(), clients=(client,), duration_s=ROUND_S)


async def test_builtin_http_max_throughput_vs_wrk() -> None:
    if wrk_path() is None:
        pytest.skip("wrk is not installed (apt-get install wrk; CI installs it)")
    process, server = start_server("http")
    rounds: list[tuple[PerformanceResult, PerformanceResult, float]] = []
    try:
        url = server.url()
        for _ in range(ROUNDS):
            cpu_before = time.process_time()
            builtin = await run_builtin(_http_config(url, LoadGenerator.BUILTIN))
            cpu_us = (time.process_time() - cpu_before) / max(builtin.request_count, 1) * 1e6
            wrk = await run_wrk(_http_config(url, LoadGenerator.WRK))
            rounds.append((builtin, wrk, cpu_us))
    finally:
        stop_server(process)
    print()
    ratios = []
    for number, (builtin, wrk, cpu_us) in enumerate(rounds, start=1):
        ratios.append(builtin.actual_qps / wrk.actual_qps)
        print(_line(f"round {number} builtin", builtin) + f"  cpu {cpu_us:.1f} us/req")
        print(_line(f"round {number} wrk -t1", wrk))
    print(
        f"builtin/wrk ratio      median {statistics.median(ratios):.2f}  rounds "
        + " ".join(f"{r:.2f}" for r in ratios)
        + f"  (goal >= 0.5, {CONNECTIONS} connections, one thread each)"
    )


async def test_builtin_grpc_max_throughput() -> None:
    process, server = start_server("grpc")
    try:
        client = ClientConfig(
            protocol=Protocol.GRPC,
            endpoint_urls=(server.address,),
            connections=4,
            grpc_method="grpc.health.v1.Health/Check",
            body='{"service": ""}',
        )
        result = await run_builtin(
            TestConfig(id=new_id(), clients=(client,), duration_s=DURATION_S)
        )
    finally:
        stop_server(process)
    print()
    print(_line("builtin gRPC unary", result))
