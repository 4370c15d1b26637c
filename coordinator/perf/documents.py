"""The SMP-shaped document of a result (`--output json|yaml`): SMP v0.6.1 names, ms latencies.

Plain data (dicts, lists, numbers, RFC 3339 UTC strings) so JSON and YAML render the same
thing; int64 counts stay numbers (protobuf's JSON mapping would turn them into strings).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import yaml

from coordinator.perf.results import (
    HistogramBucket,
    LatencySummary,
    PerformanceResult,
    TestConfig,
    TimelinePoint,
)

SMP_VERSION = "v0.6.1"


def _utc(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def config_document(config: TestConfig) -> dict[str, Any]:
    """SMP `PerformanceTestConfig` as plain data (duration as a Go-style string, e.g. "30s")."""
    return {
        "id": config.id,
        "name": config.name,
        "labels": dict(config.labels),
        "duration": f"{config.duration_s:g}s",
        "request_count": config.request_count,
        "clients": [
            {
                "load_generator": client.load_generator.value,
                "protocol": client.protocol.value,
                "connections": client.connections,
                "rps": client.rps,
                "headers": dict(client.headers),
                "cookies": dict(client.cookies),
                "body": client.body,
                "content_type": client.content_type,
                "endpoint_urls": list(client.endpoint_urls),
                "grpc_method": client.grpc_method,
                "http_method": client.http_method,
            }
            for client in config.clients
        ],
    }


def _latencies_document(latencies: LatencySummary) -> dict[str, float]:
    return {
        "min": latencies.min_ms,
        "average": latencies.average_ms,
        "p50": latencies.p50_ms,
        "p75": latencies.p75_ms,
        "p90": latencies.p90_ms,
        "p99": latencies.p99_ms,
        "p99_9": latencies.p999_ms,
        "max": latencies.max_ms,
        "stddev": latencies.stddev_ms,
    }


def _histogram_document(histogram: tuple[HistogramBucket, ...]) -> list[dict[str, Any]]:
    return [
        {
            "start": b.start_ms,
            "end": b.end_ms,
            "count": b.count,
            "cumulative_percent": b.cumulative_percent,
        }
        for b in histogram
    ]


def _timeline_document(timeline: tuple[TimelinePoint, ...]) -> list[dict[str, Any]]:
    return [
        {
            "elapsed_seconds": point.elapsed_s,
            "requests": point.requests,
            "errors": point.errors,
            "qps": point.qps,
            "mean_latency_ms": point.mean_latency_ms,
            "max_latency_ms": point.max_latency_ms,
        }
        for point in timeline
    ]


def _optional_sections(result: PerformanceResult) -> dict[str, Any]:
    """The mesh, environment and config sections a result has (none is required)."""
    sections: dict[str, Any] = {}
    if result.mesh is not None:
        sections["mesh"] = {
            "type": result.mesh.type,
            "version": result.mesh.version,
            "adapter": result.mesh.adapter,
        }
    if result.environment is not None:
        sections["environment"] = {
            "kubernetes_version": result.environment.kubernetes_version,
            "node_count": result.environment.node_count,
        }
    if result.config is not None:
        sections["config"] = config_document(result.config)
    return sections


def result_document(result: PerformanceResult) -> dict[str, Any]:
    """SMP `PerformanceTestResult` fields first, then our additions."""
    return {
        "smp_version": SMP_VERSION,
        "id": result.id,
        "labels": dict(result.labels),
        "start_time": _utc(result.start_time),
        "end_time": _utc(result.end_time),
        "latencies_ms": _latencies_document(result.latencies),
        "actual_qps": result.actual_qps,
        "test_id": result.test_id,
        "mesh_config_id": result.mesh_config_id,
        "env_id": result.env_id,
        "requested_qps": result.requested_qps,
        "request_count": result.request_count,
        "error_count": result.error_count,
        "load_generator": result.load_generator.value,
        "connections": result.connections,
        "http_status_counts": dict(result.http_status_counts),
        "grpc_code_counts": dict(result.grpc_code_counts),
        "transport_error_counts": dict(result.transport_error_counts),
        "histogram_ms": _histogram_document(result.histogram),
        "timeline": _timeline_document(result.timeline),
        **_optional_sections(result),
    }


def render(document: Any, output: str) -> str:
    """Render plain data as "json" or "yaml"."""
    if output == "json":
        return json.dumps(document, indent=2) + "\n"
    if output == "yaml":
        return yaml.safe_dump(document, sort_keys=False)
    raise ValueError(f"unknown output format {output!r} (json or yaml)")
