"""The built-in load generator: paced (constant-rate) or closed-loop (max-throughput) runs.

Constant rate is an open model: request i has an intended send time `start + i / rate`, whichever
connection is free takes the next i, and its latency is measured from the *intended* time. A
server stall therefore shows up in every request that should have been sent during it (no
coordinated omission), not just in the few that were in flight. Max-throughput is a closed loop
per connection, latency measured from the actual send.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import structlog

from coordinator.perf import identities
from coordinator.perf.grpc_load import GrpcConnection, resolve_target
from coordinator.perf.http_load import HttpConnection, build_target
from coordinator.perf.recording import Tally, buckets, summarise
from coordinator.perf.results import (
    ClientConfig,
    EnvironmentInfo,
    LoadGenerator,
    MeshInfo,
    PerformanceResult,
    Progress,
    Protocol,
    TestConfig,
    TimelinePoint,
)
from coordinator.perf.scheduling import Schedule
from coordinator.perf.transports import Transport, TransportError

log = structlog.get_logger(__name__)

ProgressCallback = Callable[[Progress], None]
PROGRESS_INTERVAL_S = 1.0


def validate(config: TestConfig) -> ClientConfig:
    """The client the built-in generator will run; ValueError says what is wrong."""
    if not config.clients:
        raise ValueError("the test config has no clients")
    client = config.clients[0]
    if client.protocol not in (Protocol.HTTP, Protocol.GRPC):
        raise ValueError(
            f"the built-in generator speaks HTTP and gRPC, not {client.protocol.value}"
        )
    if not client.endpoint_urls:
        raise ValueError("the client has no endpoint URL")
    if client.connections < 1:
        raise ValueError("connections must be at least 1")
    if client.rps < 0:
        raise ValueError("rps must be >= 0 (0 means max-throughput)")
    if config.request_count <= 0 and config.duration_s <= 0:
        raise ValueError("give a duration or a request count")
    if client.protocol is Protocol.GRPC and not client.grpc_method:
        raise ValueError("a gRPC client needs grpc_method ('package.Service/Method')")
    return client


async def _open_transports(client: ClientConfig) -> list[Transport]:
    """One transport per connection, spread round-robin over the endpoint URLs."""
    urls = client.endpoint_urls
    if client.protocol is Protocol.GRPC:
        targets = [
            await resolve_target(url, client.grpc_method, client.body, client.headers)
            for url in urls
        ]
        return [
            GrpcConnection(targets[number % len(targets)], client.request_timeout_s)
            for number in range(client.connections)
        ]
    http_targets = [
        build_target(
            url,
            method=client.http_method,
            headers=client.headers,
            cookies=client.cookies,
            body=client.body,
            content_type=client.content_type,
        )
        for url in urls
    ]
    return [
        HttpConnection(http_targets[number % len(http_targets)], client.request_timeout_s)
        for number in range(client.connections)
    ]


async def _paced_worker(transport: Transport, schedule: Schedule, tally: Tally) -> None:
    clock = time.monotonic
    failed = transport.failed
    while (index := schedule.next_index()) is not None:
        intended = schedule.intended_time(index)
        wait = intended - clock()
        if wait > 0:
            await asyncio.sleep(wait)
        try:
            code = await transport.request()
        except TransportError as exc:
            tally.transport_error(exc.kind, clock())
            continue
        done = clock()
        tally.response(code, done - intended, failed(code), done)


async def _sample(
    test_id: str,
    start: float,
    tally: Tally,
    timeline: list[TimelinePoint],
    on_progress: ProgressCallback | None,
) -> None:
    """Every interval: one timeline point, and a progress report when someone listens."""
    previous = 0
    previous_at = start
    while True:
        await asyncio.sleep(PROGRESS_INTERVAL_S)
        now = time.monotonic()
        timeline.append(tally.close_interval(now - start, now - previous_at))
        answered = tally.attempts
        if on_progress is not None:
            on_progress(
                Progress(
                    test_id=test_id,
                    elapsed_s=now - start,
                    requests=tally.responses,
                    errors=tally.errors,
                    current_qps=(answered - previous) / (now - previous_at),
                )
            )
        previous, previous_at = answered, now


@dataclass(kw_only=True)
class _BuiltinRun:
    """One run of the built-in generator: its client, clocks, counters and timeline."""

    config: TestConfig
    client: ClientConfig
    tally: Tally = field(default_factory=Tally)
    timeline: list[TimelinePoint] = field(default_factory=list)
    wall_start: datetime = field(default_factory=lambda: datetime.now(UTC))
    start: float = field(default_factory=time.monotonic)

    def schedule(self, time_limit_s: float) -> Schedule:
        """Request indices for the run: until its duration or count, and the time limit."""
        config, client = self.config, self.client
        return Schedule(
            start=self.start,
            interval=1.0 / client.rps if client.rps else 0.0,
            deadline=self.start
            + min(float("inf") if config.request_count > 0 else config.duration_s, time_limit_s),
            limit=max(config.request_count, 0),
        )

    async def generate(
        self, transports: list[Transport], schedule: Schedule, on_progress: ProgressCallback | None
    ) -> None:
        """Every connection sends until the schedule ends, sampled once per interval."""
        test_id = self.config.id
        async with asyncio.TaskGroup() as workers:
            sampler = workers.create_task(
                _sample(test_id, self.start, self.tally, self.timeline, on_progress),
                name=f"perf-progress-{test_id}",
            )
            async with asyncio.TaskGroup() as load:
                for number, transport in enumerate(transports):
                    work = (
                        _paced_worker(transport, schedule, self.tally)
                        if self.client.rps
                        else transport.run_closed_loop(schedule, self.tally)
                    )
                    load.create_task(work, name=f"perf-conn-{test_id}-{number}")
            sampler.cancel()

    def elapsed(self) -> float:
        """Seconds from the start to the last answer; closes the partial last interval."""
        end = self.tally.last_done or time.monotonic()
        elapsed = max(end - self.start, 1e-9)
        last = self.timeline[-1].elapsed_s if self.timeline else 0.0
        if not self.timeline or elapsed - last > 0.05:  # the partial interval the run ended in
            self.timeline.append(self.tally.close_interval(elapsed, max(elapsed - last, 1e-9)))
        return elapsed

    def result(
        self, elapsed: float, *, mesh: MeshInfo | None, environment: EnvironmentInfo | None
    ) -> PerformanceResult:
        """The finished run as a result."""
        tally, client, protocol = self.tally, self.client, self.client.protocol
        return PerformanceResult(
            id=identities.new_id(),
            test_id=self.config.id,
            start_time=self.wall_start,
            end_time=self.wall_start + timedelta(seconds=elapsed),
            latencies=summarise(tally.histogram()),
            actual_qps=tally.responses / elapsed,
            requested_qps=client.rps,
            request_count=tally.responses,
            error_count=tally.errors,
            load_generator=LoadGenerator.BUILTIN,
            connections=client.connections,
            mesh_config_id=identities.mesh_config_id(mesh),
            env_id=identities.env_id(environment),
            labels=dict(self.config.labels),
            http_status_counts=dict(tally.codes) if protocol is Protocol.HTTP else {},
            grpc_code_counts=dict(tally.codes) if protocol is Protocol.GRPC else {},
            transport_error_counts=dict(tally.transport_errors),
            histogram=buckets(tally.histogram()),
            timeline=tuple(self.timeline),
            mesh=mesh,
            environment=environment,
            config=self.config,
        )


async def run_builtin(
    config: TestConfig,
    *,
    mesh: MeshInfo | None = None,
    environment: EnvironmentInfo | None = None,
    on_progress: ProgressCallback | None = None,
    time_limit_s: float = float("inf"),
) -> PerformanceResult:
    """Generate the configured load with the built-in generator and return the result.

    The run ends after its duration, or its request count, and in any case after `time_limit_s`.
    """
    client = validate(config)
    transports = await _open_transports(client)
    run = _BuiltinRun(config=config, client=client)
    schedule = run.schedule(time_limit_s)
    log.info(
        "perf.run.start",
        test_id=config.id,
        protocol=client.protocol.value,
        urls=list(client.endpoint_urls),
        rps=client.rps,
        connections=client.connections,
    )
    try:
        await run.generate(transports, schedule, on_progress)
    finally:
        for transport in transports:
            await transport.close()
    result = run.result(run.elapsed(), mesh=mesh, environment=environment)
    log.info(
        "perf.run.done",
        test_id=config.id,
        result_id=result.id,
        requests=result.request_count,
        errors=result.error_count,
        actual_qps=round(result.actual_qps, 1),
        p99_ms=result.latencies.p99_ms,
    )
    return result
