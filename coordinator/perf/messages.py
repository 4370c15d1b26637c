"""Conversion between the plain perf types and `meshplane.perf.v1` messages (the only _pb2 user).

The coordinator stores results as serialised `PerformanceResult` messages and serves them over
gRPC; both directions are lossless for every field the types carry.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime

from google.protobuf import duration_pb2, timestamp_pb2

from coordinator.perf.comparing import Comparison
from coordinator.perf.results import (
    ClientConfig,
    EnvironmentInfo,
    HistogramBucket,
    LatencySummary,
    LoadGenerator,
    MeshInfo,
    PerformanceResult,
    Progress,
    Protocol,
    TestConfig,
    TimelinePoint,
)
from meshplane.perf.v1 import perf_pb2
from serving.input_quoting import quoted

_PROTOCOL_TO_PB = {
    Protocol.HTTP: perf_pb2.PROTOCOL_HTTP,
    Protocol.GRPC: perf_pb2.PROTOCOL_GRPC,
    Protocol.TCP: perf_pb2.PROTOCOL_TCP,
    Protocol.UDP: perf_pb2.PROTOCOL_UDP,
}
_PROTOCOL_FROM_PB: dict[int, Protocol] = {int(v): k for k, v in _PROTOCOL_TO_PB.items()}
_DEFAULT_TIMEOUT_S = 5.0


def _timestamp(moment: datetime) -> timestamp_pb2.Timestamp:
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(moment.astimezone(UTC))
    return stamp


def _datetime(stamp: timestamp_pb2.Timestamp) -> datetime:
    return stamp.ToDatetime(tzinfo=UTC)


def _duration(seconds: float) -> duration_pb2.Duration:
    value = duration_pb2.Duration()
    value.FromNanoseconds(round(seconds * 1e9))
    return value


def _seconds(value: duration_pb2.Duration) -> float:
    return value.ToNanoseconds() / 1e9


def protocol_from_proto(value: int) -> Protocol:
    """Map the enum; PROTOCOL_UNSPECIFIED (and unknown values) are rejected."""
    try:
        return _PROTOCOL_FROM_PB[int(value)]
    except KeyError:
        raise ValueError("client protocol is unspecified: choose HTTP, GRPC, TCP or UDP") from None


def load_generator_from_name(name: str) -> LoadGenerator:
    """ "builtin", "wrk" or "fortio" (empty means builtin)."""
    try:
        return LoadGenerator(name.strip().lower() or LoadGenerator.BUILTIN.value)
    except ValueError:
        choices = ", ".join(g.value for g in LoadGenerator)
        raise ValueError(f"unknown load generator {quoted(name)} (choose {choices})") from None


def config_to_proto(config: TestConfig) -> perf_pb2.PerformanceTestConfig:
    """TestConfig -> PerformanceTestConfig."""
    message = perf_pb2.PerformanceTestConfig(
        id=config.id,
        name=config.name,
        labels=dict(config.labels),
        duration=_duration(config.duration_s),
        request_count=config.request_count,
    )
    for client in config.clients:
        message.clients.append(
            perf_pb2.PerformanceTestClient(
                load_generator=client.load_generator.value,
                protocol=_PROTOCOL_TO_PB[client.protocol],
                connections=client.connections,
                rps=client.rps,
                headers=dict(client.headers),
                cookies=dict(client.cookies),
                body=client.body,
                content_type=client.content_type,
                endpoint_urls=list(client.endpoint_urls),
                grpc_method=client.grpc_method,
                http_method=client.http_method,
                request_timeout=_duration(client.request_timeout_s),
            )
        )
    return message


def config_from_proto(message: perf_pb2.PerformanceTestConfig, *, default_id: str) -> TestConfig:
    """PerformanceTestConfig -> TestConfig; an empty id becomes `default_id`."""
    clients = tuple(
        ClientConfig(
            protocol=protocol_from_proto(client.protocol),
            endpoint_urls=tuple(client.endpoint_urls),
            load_generator=load_generator_from_name(client.load_generator),
            connections=client.connections or 1,
            rps=client.rps,
            headers=dict(client.headers),
            cookies=dict(client.cookies),
            body=client.body,
            content_type=client.content_type,
            grpc_method=client.grpc_method,
            http_method=client.http_method,
            request_timeout_s=(
                _seconds(client.request_timeout)
                if client.HasField("request_timeout")
                else _DEFAULT_TIMEOUT_S
            ),
        )
        for client in message.clients
    )
    return TestConfig(
        id=message.id or default_id,
        name=message.name,
        labels=dict(message.labels),
        duration_s=_seconds(message.duration),
        request_count=message.request_count,
        clients=clients,
    )


def _latencies_to_proto(latencies: LatencySummary) -> perf_pb2.LatencySummary:
    return perf_pb2.LatencySummary(
        min_ms=latencies.min_ms,
        average_ms=latencies.average_ms,
        p50_ms=latencies.p50_ms,
        p75_ms=latencies.p75_ms,
        p90_ms=latencies.p90_ms,
        p99_ms=latencies.p99_ms,
        p999_ms=latencies.p999_ms,
        max_ms=latencies.max_ms,
        stddev_ms=latencies.stddev_ms,
    )


def _latencies_from_proto(message: perf_pb2.LatencySummary) -> LatencySummary:
    return LatencySummary(
        min_ms=message.min_ms,
        average_ms=message.average_ms,
        p50_ms=message.p50_ms,
        p75_ms=message.p75_ms,
        p90_ms=message.p90_ms,
        p99_ms=message.p99_ms,
        p999_ms=message.p999_ms,
        max_ms=message.max_ms,
        stddev_ms=message.stddev_ms,
    )


def _histogram_to_proto(
    histogram: tuple[HistogramBucket, ...],
) -> list[perf_pb2.HistogramBucket]:
    return [
        perf_pb2.HistogramBucket(
            start_ms=b.start_ms,
            end_ms=b.end_ms,
            count=b.count,
            cumulative_percent=b.cumulative_percent,
        )
        for b in histogram
    ]


def _histogram_from_proto(
    buckets: Iterable[perf_pb2.HistogramBucket],
) -> tuple[HistogramBucket, ...]:
    return tuple(
        HistogramBucket(
            start_ms=b.start_ms,
            end_ms=b.end_ms,
            count=b.count,
            cumulative_percent=b.cumulative_percent,
        )
        for b in buckets
    )


def _timeline_to_proto(timeline: tuple[TimelinePoint, ...]) -> list[perf_pb2.TimelinePoint]:
    return [
        perf_pb2.TimelinePoint(
            elapsed_seconds=point.elapsed_s,
            requests=point.requests,
            errors=point.errors,
            qps=point.qps,
            mean_latency_ms=point.mean_latency_ms,
            max_latency_ms=point.max_latency_ms,
        )
        for point in timeline
    ]


def _timeline_from_proto(points: Iterable[perf_pb2.TimelinePoint]) -> tuple[TimelinePoint, ...]:
    return tuple(
        TimelinePoint(
            elapsed_s=point.elapsed_seconds,
            requests=point.requests,
            errors=point.errors,
            qps=point.qps,
            mean_latency_ms=point.mean_latency_ms,
            max_latency_ms=point.max_latency_ms,
        )
        for point in points
    )


def _mesh_from_proto(message: perf_pb2.PerformanceResult) -> MeshInfo | None:
    if not message.HasField("mesh"):
        return None
    return MeshInfo(
        type=message.mesh.type, version=message.mesh.version, adapter=message.mesh.adapter
    )


def _environment_from_proto(message: perf_pb2.PerformanceResult) -> EnvironmentInfo | None:
    if not message.HasField("environment"):
        return None
    return EnvironmentInfo(
        kubernetes_version=message.environment.kubernetes_version,
        node_count=message.environment.node_count,
    )


def _copy_optional_sections(result: PerformanceResult, message: perf_pb2.PerformanceResult) -> None:
    """Set the mesh, environment and config a result has (each is optional)."""
    if result.mesh is not None:
        message.mesh.CopyFrom(
            perf_pb2.MeshInfo(
                type=result.mesh.type, version=result.mesh.version, adapter=result.mesh.adapter
            )
        )
    if result.environment is not None:
        message.environment.CopyFrom(
            perf_pb2.EnvironmentInfo(
                kubernetes_version=result.environment.kubernetes_version,
                node_count=result.environment.node_count,
            )
        )
    if result.config is not None:
        message.config.CopyFrom(config_to_proto(result.config))


def result_to_proto(result: PerformanceResult) -> perf_pb2.PerformanceResult:
    """PerformanceResult (plain) -> PerformanceResult (message)."""
    message = perf_pb2.PerformanceResult(
        id=result.id,
        labels=dict(result.labels),
        start_time=_timestamp(result.start_time),
        end_time=_timestamp(result.end_time),
        latencies=_latencies_to_proto(result.latencies),
        actual_qps=result.actual_qps,
        test_id=result.test_id,
        mesh_config_id=result.mesh_config_id,
        env_id=result.env_id,
        requested_qps=result.requested_qps,
        request_count=result.request_count,
        error_count=result.error_count,
        http_status_counts=dict(result.http_status_counts),
        grpc_code_counts=dict(result.grpc_code_counts),
        transport_error_counts=dict(result.transport_error_counts),
        histogram=_histogram_to_proto(result.histogram),
        load_generator=result.load_generator.value,
        connections=result.connections,
        timeline=_timeline_to_proto(result.timeline),
    )
    _copy_optional_sections(result, message)
    return message


def result_from_proto(message: perf_pb2.PerformanceResult) -> PerformanceResult:
    """PerformanceResult (message) -> PerformanceResult (plain), e.g. when read from the store."""
    return PerformanceResult(
        id=message.id,
        test_id=message.test_id,
        start_time=_datetime(message.start_time),
        end_time=_datetime(message.end_time),
        latencies=_latencies_from_proto(message.latencies),
        actual_qps=message.actual_qps,
        requested_qps=message.requested_qps,
        request_count=message.request_count,
        error_count=message.error_count,
        load_generator=load_generator_from_name(message.load_generator),
        connections=message.connections,
        mesh_config_id=message.mesh_config_id,
        env_id=message.env_id,
        labels=dict(message.labels),
        http_status_counts=dict(message.http_status_counts),
        grpc_code_counts=dict(message.grpc_code_counts),
        transport_error_counts=dict(message.transport_error_counts),
        histogram=_histogram_from_proto(message.histogram),
        timeline=_timeline_from_proto(message.timeline),
        mesh=_mesh_from_proto(message),
        environment=_environment_from_proto(message),
        config=(
            config_from_proto(message.config, default_id=message.test_id)
            if message.HasField("config")
            else None
        ),
    )


def progress_to_proto(progress: Progress) -> perf_pb2.PerformanceProgress:
    """Progress -> PerformanceProgress."""
    return perf_pb2.PerformanceProgress(
        test_id=progress.test_id,
        elapsed=_duration(progress.elapsed_s),
        requests=progress.requests,
        errors=progress.errors,
        current_qps=progress.current_qps,
    )


def comparison_to_proto(comparison: Comparison) -> perf_pb2.ComparePerformanceResultsResponse:
    """Comparison -> ComparePerformanceResultsResponse."""
    response = perf_pb2.ComparePerformanceResultsResponse(ids=list(comparison.ids))
    for row in comparison.rows:
        out = response.rows.add(metric=row.metric, unit=row.unit)
        for cell in row.cells:
            added = out.cells.add(result_id=cell.result_id, value=cell.value)
            if cell.relative_difference is not None:
                added.relative_difference = cell.relative_difference
    return response
