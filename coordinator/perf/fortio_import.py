"""Import a fortio JSON result file as a PerformanceResult.

fortio's `DurationHistogram` (Min, Max, Avg, StdDev, Data[].Start/End, Percentiles[].Value) is in
SECONDS. Meshery stores those numbers in fields named `_ms` without converting; here every one is
multiplied by 1000. `ActualDuration` is in nanoseconds (Go's time.Duration).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from coordinator.perf import identities
from coordinator.perf.results import (
    ClientConfig,
    EnvironmentInfo,
    HistogramBucket,
    LatencySummary,
    LoadGenerator,
    MeshInfo,
    PerformanceResult,
    Protocol,
    TestConfig,
)

_MS_PER_S = 1000.0
_GRPC_SUCCESS = frozenset({"OK", "SERVING"})


def _percentile_from_data(
    data: Sequence[Mapping[str, Any]], total: int, percentile: float
) -> float:
    """Linear interpolation inside fortio's buckets (seconds), as fortio itself does."""
    target = total * percentile / 100.0
    seen = 0.0
    for bucket in data:
        count = float(bucket["Count"])
        if seen + count >= target and count:
            start, end = float(bucket["Start"]), float(bucket["End"])
            return start + (end - start) * (target - seen) / count
        seen += count
    return float(data[-1]["End"]) if data else 0.0


def _latencies(histogram: Mapping[str, Any]) -> LatencySummary:
    total = int(histogram.get("Count", 0))
    data: Sequence[Mapping[str, Any]] = histogram.get("Data") or []
    given = {float(p["Percentile"]): float(p["Value"]) for p in histogram.get("Percentiles") or []}

    def percentile_s(p: float) -> float:
        return given[p] if p in given else _percentile_from_data(data, total, p)

    return LatencySummary(
        min_ms=float(histogram.get("Min", 0.0)) * _MS_PER_S,
        average_ms=float(histogram.get("Avg", 0.0)) * _MS_PER_S,
        p50_ms=percentile_s(50.0) * _MS_PER_S,
        p75_ms=percentile_s(75.0) * _MS_PER_S,
        p90_ms=percentile_s(90.0) * _MS_PER_S,
        p99_ms=percentile_s(99.0) * _MS_PER_S,
        p999_ms=percentile_s(99.9) * _MS_PER_S,
        max_ms=float(histogram.get("Max", 0.0)) * _MS_PER_S,
        stddev_ms=float(histogram.get("StdDev", 0.0)) * _MS_PER_S,
    )


def _buckets(histogram: Mapping[str, Any]) -> tuple[HistogramBucket, ...]:
    return tuple(
        HistogramBucket(
            start_ms=float(b["Start"]) * _MS_PER_S,
            end_ms=float(b["End"]) * _MS_PER_S,
            count=int(b["Count"]),
            cumulative_percent=float(b["Percent"]),
        )
        for b in histogram.get("Data") or []
        if int(b["Count"])
    )


def _requested_qps(value: Any) -> float:
    """fortio writes RequestedQPS as a string: a number, or "max"."""
    try:
        return max(float(value), 0.0)
    except (TypeError, ValueError):
        return 0.0


def _start_time(value: Any) -> datetime:
    if not value:
        raise ValueError("fortio result has no StartTime")
    parsed = datetime.fromisoformat(str(value))
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


@dataclass(frozen=True, kw_only=True)
class _Outcomes:
    """fortio's RetCodes split into answers and transport failures, and how many failed."""

    codes: dict[str, int]
    transport: dict[str, int]
    errors: int


def _outcomes(document: Mapping[str, Any], *, is_grpc: bool) -> _Outcomes:
    codes = {str(code): int(count) for code, count in (document.get("RetCodes") or {}).items()}
    transport = {"socket": codes.pop("-1")} if "-1" in codes else {}
    if is_grpc:
        errors = sum(count for code, count in codes.items() if code not in _GRPC_SUCCESS)
    else:
        errors = sum(count for code, count in codes.items() if not 100 <= int(code) < 400)
    return _Outcomes(codes=codes, transport=transport, errors=errors + sum(transport.values()))


def _config(
    document: Mapping[str, Any], *, test_id: str | None, is_grpc: bool, elapsed_s: float
) -> TestConfig:
    """The test as fortio ran it: one client, its URL, connections and requested rate."""
    url = str(document.get("URL") or document.get("Destination") or "")
    labels = {"fortio.labels": str(document["Labels"])} if document.get("Labels") else {}
    return TestConfig(
        id=test_id or identities.new_id(),
        name=str(document.get("Labels") or ""),
        labels=labels,
        duration_s=elapsed_s,
        clients=(
            ClientConfig(
                protocol=Protocol.GRPC if is_grpc else Protocol.HTTP,
                endpoint_urls=(url,) if url else (),
                load_generator=LoadGenerator.FORTIO,
                connections=int(
                    document.get("NumThreads", 0) or document.get("SocketCount", 0) or 1
                ),
                rps=_requested_qps(document.get("RequestedQPS")),
            ),
        ),
    )


def from_fortio(
    document: Mapping[str, Any],
    *,
    test_id: str | None = None,
    mesh: MeshInfo | None = None,
    environment: EnvironmentInfo | None = None,
) -> PerformanceResult:
    """Normalise one parsed fortio result (HTTP or gRPC) to a PerformanceResult in ms."""
    histogram = document.get("DurationHistogram")
    if not isinstance(histogram, Mapping):
        raise ValueError("not a fortio result: no DurationHistogram")
    is_grpc = str(document.get("RunType", "HTTP")).upper().startswith("GRPC")
    outcomes = _outcomes(document, is_grpc=is_grpc)
    started = _start_time(document.get("StartTime"))
    elapsed_s = int(document.get("ActualDuration", 0)) / 1e9
    config = _config(document, test_id=test_id, is_grpc=is_grpc, elapsed_s=elapsed_s)
    client = config.clients[0]
    return PerformanceResult(
        id=identities.new_id(),
        test_id=config.id,
        start_time=started,
        end_time=started + timedelta(seconds=elapsed_s),
        latencies=_latencies(histogram),
        actual_qps=float(document.get("ActualQPS", 0.0)),
        requested_qps=client.rps,
        request_count=int(histogram.get("Count", 0)),
        error_count=outcomes.errors,
        load_generator=LoadGenerator.FORTIO,
        connections=client.connections,
        mesh_config_id=identities.mesh_config_id(mesh),
        env_id=identities.env_id(environment),
        labels=dict(config.labels),
        http_status_counts={} if is_grpc else outcomes.codes,
        grpc_code_counts=outcomes.codes if is_grpc else {},
        transport_error_counts=outcomes.transport,
        histogram=_buckets(histogram),
        mesh=mesh,
        environment=environment,
        config=config,
    )


def load_fortio_file(
    path: Path,
    *,
    test_id: str | None = None,
    mesh: MeshInfo | None = None,
    environment: EnvironmentInfo | None = None,
) -> PerformanceResult:
    """Read and normalise a fortio JSON file (`fortio load -json FILE`)."""
    document = json.loads(path.read_text())
    if not isinstance(document, dict):
        raise ValueError(f"{path}: not a fortio result object")
    return from_fortio(document, test_id=test_id, mesh=mesh, environment=environment)
