"""Routed (client → coordinator → adapter) vs direct (client → adapter) unary GetInfo.

Every server has its own process and event loop: the fake adapter, the coordinator
(`meshplane coordinator`) and two bare raw-bytes proxies (a generic handler forwarding to one
fixed channel, nothing else: the floor any Python gRPC hop costs), one on ``grpc.aio``, one on
grpcio's blocking API with a thread pool. The client is this test's
loop. The arms are measured interleaved (one call to each in turn; throughput bursts in
rotation), so load from other processes on a shared machine falls on all of them alike.

Latency: one call at a time (p50/p99/mean, added vs direct). Throughput: 32 concurrent callers
(wall clock, bounded by this client and by the machine's cores). Capacity: the proxy process's
CPU per call, i.e. how many calls one core can route. Before/after in one run: set
``MESHPLANE_BENCH_BASELINE`` to another checkout (e.g. ``git worktree add /tmp/base HEAD~3``) and
its coordinator becomes one more arm. No timing asserts (the machine is shared); the targets are
printed with the numbers: <= 0.5 ms added at p50, >= 2,000 routed req/s on one core.

``python -m tests.bench.test_routing_bench adapter|proxy|blocking-proxy UPSTREAM`` runs the
servers (first stdout line: the address).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from concurrent import futures
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import grpc.aio
import pytest

from coordinator.server.passthrough import MESH_METADATA_KEY
from meshplane.adapter.v1 import adapter_pb2 as apb
from meshplane.adapter.v1 import adapter_pb2_grpc as apb_grpc
from serving.logging_setup import configure_logging
from tests.bench.process_usage import cpu_seconds
from tests.coordinator.identities import ADMIN, write_token_file
from tests.coordinator.routing_harness import ADAPTER_SERVICE, fakes
from tests.fixtures_paths import PROJECT_ROOT

pytestmark = pytest.mark.bench

BASELINE_ENV = "MESHPLANE_BENCH_BASELINE"
LATENCY_CALLS = 2000
WARMUP_CALLS = 300
THROUGHPUT_ROUNDS = 4
BURST_SECONDS = 0.5
CONCURRENCY = 32
TARGET_ADDED_P50_MS = 0.5
TARGET_ROUTED_PER_CORE = 2000.0

Call = Callable[[], Awaitable[Any]]


@dataclass(kw_only=True)
class Arm:
    """One way to reach the adapter, and what was measured through it."""

    name: str
    call: Call
    pid: int | None = None
    """The proxy process in the path (its CPU is the hop's cost); None for direct."""
    latencies_ms: list[float] = field(default_factory=list)
    calls: int = 0
    seconds: float = 0.0
    cpu_seconds: float = 0.0

    def p(self, q: float) -> float:
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    @property
    def rps(self) -> float:
        return self.calls / self.seconds

    @property
    def per_core(self) -> float | None:
        """Calls one core of the proxy process can route (None without a proxy or /proc)."""
        return self.calls / self.cpu_seconds if self.cpu_seconds > 0 else None


async def _latencies(arms: Sequence[Arm]) -> None:
    """One call at a time, arms in turn (the starting arm rotates)."""
    for _ in range(WARMUP_CALLS):
        for arm in arms:
            await arm.call()
    for i in range(LATENCY_CALLS):
        for k in range(len(arms)):
            arm = arms[(i + k) % len(arms)]
            started = time.perf_counter()
            await arm.call()
            arm.latencies_ms.append((time.perf_counter() - started) * 1000)


async def _burst(arm: Arm) -> None:
    """CONCURRENCY callers for BURST_SECONDS; adds calls, wall time and proxy CPU to ``arm``."""
    done = 0
    deadline = time.perf_counter() + BURST_SECONDS

    async def worker() -> None:
        nonlocal done
        while time.perf_counter() < deadline:
            await arm.call()
            done += 1

    cpu_before = cpu_seconds(arm.pid)
    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    arm.seconds += time.perf_counter() - started
    arm.cpu_seconds += cpu_seconds(arm.pid) - cpu_before
    arm.calls += done


async def _throughput(arms: Sequence[Arm]) -> None:
    for arm in arms:
        await _burst(arm)  # warm-up at full concurrency, not counted
        arm.calls, arm.seconds, arm.cpu_seconds = 0, 0.0, 0.0
    for _ in range(THROUGHPUT_ROUNDS):
        for arm in arms:
            await _burst(arm)


@contextlib.asynccontextmanager
async def _server_process(
    args: Sequence[str], *, cwd: Path = PROJECT_ROOT
) -> AsyncIterator[tuple[str, int]]:
    """A server process whose first stdout line is its address (or JSON with "grpc")."""
    environment = {**os.environ, "PYTHONPATH": str(cwd)}
    process = await asyncio.create_subprocess_exec(
        sys.executable, *args, cwd=cwd, env=environment, stdout=asyncio.subprocess.PIPE
    )
    try:
        assert process.stdout is not None
        line = (await asyncio.wait_for(process.stdout.readline(), 30)).decode().strip()
        assert line, f"{args[:3]} exited before announcing its address"
        address = str(json.loads(line)["grpc"]) if line.startswith("{") else line
        yield address, process.pid
    finally:
        process.terminate()
        await asyncio.wait_for(process.wait(), 30)


def _coordinator_process(
    data_dir: Path, adapter: str, *, tree: Path = PROJECT_ROOT, tokens: bool = True
) -> contextlib.AbstractAsyncContextManager[tuple[str, int]]:
    """`meshplane coordinator` (port 0) from checkout ``tree``; istio calls go to ``adapter``.

    With ``tokens`` it authenticates callers with the test token file (a baseline checkout
    from before authentication existed is started without; it ignores the token clients send).
    """
    auth = [f"--token-auth-file={write_token_file(data_dir / 'auth')}"] if tokens else []
    return _server_process(
        [
            "-c",
            "import sys; from meshplane_cli.main import main; sys.exit(main())",
            "coordinator",
            "--port=0",
            f"--adapter=istio={adapter}",
            f"--data-dir={data_dir}",
            *auth,
            "--log-level=warning",
        ],
        cwd=tree,
    )


async def _wait_routable(call: Call) -> None:
    async with asyncio.timeout(20):
        while True:
            try:
                await call()
                return
            except grpc.aio.AioRpcError:
                await asyncio.sleep(0.05)


def _getinfo(channel: Any, metadata: tuple[tuple[str, str], ...] | None = None) -> Call:
    stub = apb_grpc.MeshAdapterServiceStub(channel)
    request = apb.GetInfoRequest()

    def call() -> Awaitable[Any]:
        return stub.GetInfo(request, metadata=metadata, timeout=5)  # type: ignore[no-any-return]

    return call


def _baseline_tree() -> Path | None:
    value = os.environ.get(BASELINE_ENV, "")
    if not value:
        return None
    tree = Path(value).resolve()
    if not (tree / "meshplane_cli" / "main.py").is_file():
        pytest.fail(f"{BASELINE_ENV}={value} is not a meshplane checkout")
    return tree


def _describe_tree(tree: Path) -> str:
    found = subprocess.run(
        ["git", "-C", str(tree), "log", "-1", "--format=%h"],
        capture_output=True,
        text=True,
        check=False,
    )
    return found.stdout.strip() or tree.name


def _report(arms: Sequence[Arm]) -> list[str]:
    direct = arms[0]
    rows = [
        f"  {'':24} {'p50 ms':>7} {'p99 ms':>7} {'mean ms':>7} {'+p50 ms':>8} {'x p50':>6} "
        f"{'req/s':>7} {'x req/s':>7} {'CPU us/call':>11} {'req/s/core':>10}"
    ]
    for arm in arms:
        cpu = (
            f"{arm.cpu_seconds / arm.calls * 1e6:11.0f} {arm.per_core:10,.0f}"
            if arm.per_core is not None
            else f"{'':11} {'':10}"
        )
        rows.append(
            f"  {arm.name:24} {arm.p(0.5):7.3f} {arm.p(0.99):7.3f} "
            f"{statistics.fmean(arm.latencies_ms):7.3f} {arm.p(0.5) - direct.p(0.5):+8.3f} "
            f"{arm.p(0.5) / direct.p(0.5):6.2f} {arm.rps:7,.0f} {arm.rps / direct.rps:7.2f} {cpu}"
        )
    routed = next(arm for arm in arms if arm.name == "coordinator")
    added = routed.p(0.5) - direct.p(0.5)
    per_core = routed.per_core
    capacity = (
        "unknown (no /proc)"
        if per_core is None
        else f"{'met' if per_core >= TARGET_ROUTED_PER_CORE else 'NOT met'} ({per_core:,.0f})"
    )
    rows.append(
        f"  targets: +p50 <= {TARGET_ADDED_P50_MS} ms: "
        f"{'met' if added <= TARGET_ADDED_P50_MS else 'NOT met'} ({added:+.3f} ms); "
        f">= {TARGET_ROUTED_PER_CORE:,.0f} routed req/s on one core: {capacity}"
    )
    return rows


async def test_routed_vs_direct_getinfo(tmp_path: Path) -> None:
    baseline = _baseline_tree()
    metadata = ((MESH_METADATA_KEY, "istio"), ("authorization", f"Bearer {ADMIN.token}"))
    async with contextlib.AsyncExitStack() as stack:
        adapter, _ = await stack.enter_async_context(
            _server_process(["-m", "tests.bench.test_routing_bench", "adapter"])
        )
        proxy, proxy_pid = await stack.enter_async_context(
            _server_process(["-m", "tests.bench.test_routing_bench", "proxy", adapter])
        )
        blocking, blocking_pid = await stack.enter_async_context(
            _server_process(["-m", "tests.bench.test_routing_bench", "blocking-proxy", adapter])
        )
        routed, routed_pid = await stack.enter_async_context(
            _coordinator_process(tmp_path / "coordinator", adapter)
        )
        targets = [
            ("direct", adapter, None, None),
            ("bare grpc.aio proxy", proxy, proxy_pid, None),
            ("bare blocking proxy", blocking, blocking_pid, None),
            ("coordinator", routed, routed_pid, metadata),
        ]
        if baseline is not None:
            before, before_pid = await stack.enter_async_context(
                _coordinator_process(
                    tmp_path / "baseline",
                    adapter,
                    tree=baseline,
                    tokens=(baseline / "coordinator" / "identity").is_dir(),
                )
            )
            targets.append(
                (f"coordinator @{_describe_tree(baseline)}", before, before_pid, metadata)
            )
        arms = []
        for name, address, pid, md in targets:
            channel = await stack.enter_async_context(grpc.aio.insecure_channel(address))
            arms.append(Arm(name=name, call=_getinfo(channel, md), pid=pid))
        for arm in arms:
            await _wait_routable(arm.call)
            assert (await arm.call()).mesh == "istio", arm.name
        await _latencies(arms)
        await _throughput(arms)

    assert all(len(arm.latencies_ms) == LATENCY_CALLS and arm.calls > 0 for arm in arms)
    print(
        "\nunary GetInfo: direct vs through a proxy process (servers in their own processes, "
        f"arms interleaved; {LATENCY_CALLS} sequential calls each, {CONCURRENCY} concurrent "
        f"callers for {THROUGHPUT_ROUNDS}x{BURST_SECONDS} s each; CPU = the proxy process's)"
    )
    for row in _report(arms):
        print(row)


# -- the benchmark's server processes ------------------------------------------------------------


async def _serve_adapter() -> None:
    async with fakes(("istio", "bench")) as (adapter,):
        print(adapter.address, flush=True)
        await asyncio.Event().wait()


async def _serve_bare_proxy(upstream: str) -> None:
    """A generic handler forwarding GetInfo's bytes to one channel with the caller's deadline."""
    async with grpc.aio.insecure_channel(upstream) as channel:
        forward_call = channel.unary_unary(f"/{ADAPTER_SERVICE}/GetInfo")

        async def forward(request: bytes, context: Any) -> Any:
            return await forward_call(request, timeout=context.time_remaining())

        server = grpc.aio.server()
        server.add_generic_rpc_handlers(
            (
                grpc.method_handlers_generic_handler(
                    ADAPTER_SERVICE, {"GetInfo": grpc.unary_unary_rpc_method_handler(forward)}
                ),
            )
        )
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        print(f"127.0.0.1:{port}", flush=True)
        await server.wait_for_termination()


def _serve_blocking_proxy(upstream: str) -> None:
    """The same forwarding with grpcio's blocking API: a thread pool, a blocking channel."""
    channel = grpc.insecure_channel(upstream)
    forward_call = channel.unary_unary(f"/{ADAPTER_SERVICE}/GetInfo")

    def forward(request: bytes, context: Any) -> Any:
        return forward_call(request, timeout=context.time_remaining())

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    server.add_generic_rpc_handlers(
        (
            grpc.method_handlers_generic_handler(
                ADAPTER_SERVICE, {"GetInfo": grpc.unary_unary_rpc_method_handler(forward)}
            ),
        )
    )
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    print(f"127.0.0.1:{port}", flush=True)
    server.wait_for_termination()


def main(argv: Sequence[str] | None = None) -> None:
    """Run one of the benchmark's servers until terminated."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("server", choices=("adapter", "proxy", "blocking-proxy"))
    parser.add_argument("upstream", nargs="?", default="")
    args = parser.parse_args(argv)
    configure_logging(level="warning", json=True)
    with contextlib.suppress(KeyboardInterrupt):
        if args.server == "blocking-proxy":
            _serve_blocking_proxy(args.upstream)
            return
        serve = _serve_adapter() if args.server == "adapter" else _serve_bare_proxy(args.upstream)
        asyncio.run(serve)


if __name__ == "__main__":
    main()
