"""What an operator lets one performance test do: connections, duration, rate, concurrency,
targets and external generators (coordinator flags ``--perf-*``).

Every request is bounded in shape by `serving.request_bounds`; these are the stricter limits a
deployment chooses. A test over them is refused before it starts, naming the field, the limit
and the flag that sets it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from coordinator.perf.results import LoadGenerator, Protocol, TestConfig
from coordinator.perf.target_policy import (
    DEFAULT_ALLOWED_TARGETS,
    TargetAllowList,
    TargetRefused,
    endpoint_host,
)
from serving.durations import format_duration

__all__ = ["PerfLimits", "limit_problems"]


@dataclass(frozen=True, kw_only=True)
class PerfLimits:
    """Operator limits of performance tests (defaults: the flags' defaults)."""

    max_connections: int = 1000
    max_duration_seconds: float = 600.0
    """Longest test; a test stopped by request count is also stopped at this time."""
    max_rps: float = 50_000.0
    max_concurrent_tests: int = 2
    allowed_targets: TargetAllowList = field(
        default_factory=lambda: TargetAllowList.parse(DEFAULT_ALLOWED_TARGETS)
    )
    allow_wrk: bool = False
    """wrk is an external program; running it per request is the operator's decision."""


def limit_problems(config: TestConfig, limits: PerfLimits) -> list[str]:
    """What in ``config`` is over the operator's limits, each naming field, limit and flag."""
    if not config.clients:
        return []
    client = config.clients[0]
    where = "config.clients[0]"
    problems: list[str] = []
    if client.connections > limits.max_connections:
        problems.append(
            f"{where}.connections: {client.connections} is over this coordinator's limit of "
            f"{limits.max_connections} (--perf-max-connections)"
        )
    if client.rps > limits.max_rps:
        problems.append(
            f"{where}.rps: {client.rps:g} is over this coordinator's limit of "
            f"{limits.max_rps:g} (--perf-max-rps)"
        )
    longest = format_duration(limits.max_duration_seconds)
    if config.request_count <= 0 and config.duration_s > limits.max_duration_seconds:
        problems.append(
            f"config.duration: {format_duration(config.duration_s)} is over this coordinator's "
            f"limit of {longest} (--perf-max-duration)"
        )
    if client.request_timeout_s > limits.max_duration_seconds:
        problems.append(
            f"{where}.request_timeout: {format_duration(client.request_timeout_s)} is over the "
            f"longest test, {longest} (--perf-max-duration)"
        )
    if client.load_generator is LoadGenerator.WRK and not limits.allow_wrk:
        problems.append(
            f"{where}.load_generator: wrk runs an external program, which this coordinator "
            "does not allow (--perf-allow-wrk); use builtin"
        )
    for index, url in enumerate(client.endpoint_urls):
        try:
            host = endpoint_host(url, grpc=client.protocol is Protocol.GRPC)
            limits.allowed_targets.check(host, field=f"{where}.endpoint_urls[{index}]")
        except TargetRefused as exc:
            text = str(exc)
            problems.append(
                text if text.startswith(where) else f"{where}.endpoint_urls[{index}]: {text}"
            )
    return problems
