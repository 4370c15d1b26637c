"""fortio's JSON is in seconds: imported results must be in milliseconds (Meshery's unit bug)."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from coordinator.perf import LoadGenerator, MeshInfo, Protocol, from_fortio, load_fortio_file
from tests.fixtures_paths import OWN_FIXTURES

FORTIO_HTTP = OWN_FIXTURES / "perf" / "fortio-http.json"


def test_seconds_become_milliseconds() -> None:
    result = load_fortio_file(FORTIO_HTTP, mesh=MeshInfo(type="istio", version="1.30.3"))

    latencies = result.latencies
    assert latencies.min_ms == pytest.approx(0.812)
    assert latencies.average_ms == pytest.approx(2.104)
    assert latencies.p50_ms == pytest.approx(1.75)
    assert latencies.p75_ms == pytest.approx(2.6)
    assert latencies.p90_ms == pytest.approx(3.5)
    assert latencies.p99_ms == pytest.approx(8.33)
    assert latencies.max_ms == pytest.approx(41.5)
    assert latencies.stddev_ms == pytest.approx(2.1)
    # p99.9 is not in the file: interpolated in the 30-41.5 ms bucket (998th..1000th request)
    assert 30.0 <= latencies.p999_ms <= 41.5
    assert result.histogram[0].start_ms == pytest.approx(0.812)
    assert result.histogram[-1].end_ms == pytest.approx(41.5)
    assert sum(b.count for b in result.histogram) == 1000


def test_counts_rates_times_and_ids() -> None:
    result = load_fortio_file(FORTIO_HTTP)

    assert result.load_generator is LoadGenerator.FORTIO
    assert result.request_count == 1000
    assert result.actual_qps == pytest.approx(99.95)
    assert result.requested_qps == 100
    assert result.http_status_counts == {"200": 990, "503": 8}
    assert result.transport_error_counts == {"socket": 2}
    assert result.error_count == 10
    assert result.connections == 4
    assert result.start_time == datetime(2026, 3, 2, 10, 15, 30, 123456, tzinfo=UTC)
    assert (result.end_time - result.start_time).total_seconds() == pytest.approx(10.005, abs=1e-3)
    assert result.labels == {"fortio.labels": "istio baseline"}
    assert result.config is not None
    assert result.config.clients[0].protocol is Protocol.HTTP
    assert result.config.clients[0].endpoint_urls == ("http://httpbin.default:8000/get",)
    assert result.id != result.test_id


def test_grpc_results_and_max_qps() -> None:
    document = json.loads(FORTIO_HTTP.read_text())
    document.update(
        RunType="GRPC Health",
        RequestedQPS="max",
        RetCodes={"SERVING": 995, "NOT_SERVING": 5},
        Destination="echo:8079",
    )
    del document["URL"]

    result = from_fortio(document)

    assert result.requested_qps == 0
    assert result.grpc_code_counts == {"SERVING": 995, "NOT_SERVING": 5}
    assert result.http_status_counts == {}
    assert result.error_count == 5
    assert result.config is not None
    assert result.config.clients[0].protocol is Protocol.GRPC


def test_not_a_fortio_result() -> None:
    with pytest.raises(ValueError, match="DurationHistogram"):
        from_fortio({"RunType": "HTTP"})
