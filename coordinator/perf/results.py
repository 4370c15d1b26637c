"""Plain types for performance tests: what to run, progress while running, and the result.

They mirror `meshplane.perf.v1` (SMP v0.6.1 plus our additions) so the load generators and the
comparison never touch protobuf; `coordinator.perf.messages` converts at the door. Every latency
is in milliseconds.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime


class Protocol(enum.Enum):
    """Wire protocol of a load client (SMP `Client.Protocol`); there is no valid zero value."""

    HTTP = "HTTP"
    GRPC = "GRPC"
    TCP = "TCP"
    UDP = "UDP"


class LoadGenerator(enum.Enum):
    """Which generator produced (or should produce) the numbers."""

    BUILTIN = "builtin"
    WRK = "wrk"
    FORTIO = "fortio"


@dataclass(frozen=True, kw_only=True)
class ClientConfig:
    """One load client: target, protocol, concurrency and rate (rps 0 = max-throughput)."""

    protocol: Protocol
    endpoint_urls: tuple[str, ...]
    load_generator: LoadGenerator = LoadGenerator.BUILTIN
    connections: int = 1
    rps: float = 0.0
    headers: Mapping[str, str] = field(default_factory=dict)
    cookies: Mapping[str, str] = field(default_factory=dict)
    body: str = ""
    content_type: str = ""
    grpc_method: str = ""
    http_method: str = ""
    request_timeout_s: float = 5.0


@dataclass(frozen=True, kw_only=True)
class TestConfig:
    """What to run (SMP `PerformanceTestConfig`); `request_count` > 0 overrides `duration_s`."""

    __test__ = False  # not a pytest test class despite the name

    id: str
    clients: tuple[ClientConfig, ...]
    name: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)
    duration_s: float = 10.0
    request_count: int = 0


@dataclass(frozen=True, kw_only=True)
class LatencySummary:
    """Latency statistics in milliseconds."""

    min_ms: float
    average_ms: float
    p50_ms: float
    p75_ms: float
    p90_ms: float
    p99_ms: float
    p999_ms: float
    max_ms: float
    stddev_ms: float


@dataclass(frozen=True, kw_only=True)
class HistogramBucket:
    """Requests with latency in [start_ms, end_ms); cumulative percent up to end_ms."""

    start_ms: float
    end_ms: float
    count: int
    cumulative_percent: float


@dataclass(frozen=True, kw_only=True)
class TimelinePoint:
    """One interval (about a second) of a run: what was answered, failed, and how fast."""

    elapsed_s: float
    requests: int
    errors: int
    qps: float
    mean_latency_ms: float
    max_latency_ms: float


@dataclass(frozen=True, kw_only=True)
class MeshInfo:
    """The mesh under test as its adapter reported it ("none" for a no-mesh baseline)."""

    type: str
    version: str = ""
    adapter: str = ""


@dataclass(frozen=True, kw_only=True)
class EnvironmentInfo:
    """The cluster at test time; empty/0 when unknown."""

    kubernetes_version: str = ""
    node_count: int = 0


@dataclass(frozen=True, kw_only=True)
class Progress:
    """Progress of a running test, emitted about once per second."""

    test_id: str
    elapsed_s: float
    requests: int
    errors: int
    current_qps: float


@dataclass(frozen=True, kw_only=True)
class PerformanceResult:
    """One test's result, normalised whichever generator produced it."""

    id: str
    test_id: str
    start_time: datetime
    end_time: datetime
    latencies: LatencySummary
    actual_qps: float
    requested_qps: float
    request_count: int
    error_count: int
    load_generator: LoadGenerator
    connections: int
    mesh_config_id: str
    env_id: str
    labels: Mapping[str, str] = field(default_factory=dict)
    http_status_counts: Mapping[str, int] = field(default_factory=dict)
    grpc_code_counts: Mapping[str, int] = field(default_factory=dict)
    transport_error_counts: Mapping[str, int] = field(default_factory=dict)
    histogram: tuple[HistogramBucket, ...] = ()
    timeline: tuple[TimelinePoint, ...] = ()
    mesh: MeshInfo | None = None
    environment: EnvironmentInfo | None = None
    config: TestConfig | None = None
