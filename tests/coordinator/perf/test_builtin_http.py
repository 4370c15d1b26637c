"""The built-in HTTP generator against a real loopback server: rate, units, stalls, errors."""

from __future__ import annotations

import socket

import pytest

from coordinator.perf import (
    ClientConfig,
    LoadGenerator,
    Progress,
    Protocol,
    TestConfig,
    new_id,
    run_builtin,
)
from tests.coordinator.perf.conftest import LoopbackServer


def _config(url: str, *, rps: float = 0.0, connections: int = 4, **kwargs: float) -> TestConfig:
    client = ClientConfig(
        protocol=Protocol.HTTP, endpoint_urls=(url,), connections=connections, rps=rps
    )
    return TestConfig(id=new_id(), clients=(client,), **kwargs)  # type: ignore[arg-type]


@pytest.mark.timing
async def test_constant_rate_achieves_requested_rate(http_server: LoopbackServer) -> None:
    progress: list[Progress] = []
    config = _config(http_server.url(), rps=500, duration_s=3.0)

    result = await run_builtin(config, on_progress=progress.append)

    assert result.requested_qps == 500
    assert abs(result.actual_qps - 500) / 500 < 0.02, result.actual_qps
    assert result.request_count == 1500  # intended send times 0, 2 ms, ..., 2998 ms
    assert result.error_count == 0
    assert result.http_status_counts == {"200": 1500}
    assert result.load_generator is LoadGenerator.BUILTIN
    assert (result.end_time - result.start_time).total_seconds() == pytest.approx(3.0, abs=0.1)
    assert len(progress) >= 2
    assert [p.requests for p in progress] == sorted(p.requests for p in progress)
    assert progress[0].current_qps == pytest.approx(500, rel=0.1)
    assert sum(bucket.count for bucket in result.histogram) == 1500
    assert result.histogram[-1].cumulative_percent == pytest.approx(100.0)


@pytest.mark.timing
async def test_latencies_are_in_milliseconds(http_server: LoopbackServer) -> None:
    config = _config(http_server.url("/delay/20"), rps=100, connections=4, duration_s=1.0)

    result = await run_builtin(config)

    # every response is held 20 ms by the server: in ms that is ~20, not 0.02 (s) or 20000 (us);
    # the upper bound leaves room for a loaded machine without admitting another unit.
    assert result.latencies.min_ms >= 19.5
    assert 19.5 <= result.latencies.p50_ms < 500
    assert result.latencies.p50_ms <= result.latencies.p90_ms <= result.latencies.p99_ms
    assert result.latencies.p99_ms <= result.latencies.p999_ms <= result.latencies.max_ms
    assert all(b.start_ms >= 15 for b in result.histogram)


@pytest.mark.timing
async def test_a_stall_shows_in_p99_without_coordinated_omission(
    stalling_http_server: LoopbackServer,
) -> None:
    config = _config(stalling_http_server.url(), rps=500, connections=4, duration_s=3.0)

    result = await run_builtin(config)

    # ~100 requests were due during the 200 ms stall; measured from their intended send time
    # they waited up to 200 ms. Measured from the actual send only ~4 would look slow.
    assert result.latencies.max_ms >= 190
    assert result.latencies.p99_ms >= 100
    slow = sum(b.count for b in result.histogram if b.start_ms >= 50)
    assert slow >= 50
    assert result.error_count == 0


async def test_max_throughput_stops_after_request_count(http_server: LoopbackServer) -> None:
    config = _config(http_server.url(), connections=8, request_count=3000)

    result = await run_builtin(config)

    assert result.request_count == 3000
    assert result.requested_qps == 0
    assert result.actual_qps > 500
    assert result.http_status_counts == {"200": 3000}


async def test_http_errors_and_chunked_bodies_are_counted(http_server: LoopbackServer) -> None:
    missing = await run_builtin(_config(http_server.url("/missing"), request_count=50))
    chunked = await run_builtin(_config(http_server.url("/chunked"), request_count=50))

    assert missing.http_status_counts == {"404": 50}
    assert missing.error_count == 50
    assert chunked.http_status_counts == {"200": 50}
    assert chunked.error_count == 0


async def test_refused_connections_are_transport_errors() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed again: nothing listens there
    config = _config(f"http://127.0.0.1:{port}/", rps=200, connections=2, duration_s=0.25)

    result = await run_builtin(config)

    assert result.request_count == 0
    assert result.error_count == 50
    assert result.transport_error_counts == {"connection refused": 50}
    # one interval: every failure is on the timeline, none answered
    assert [(p.requests, p.errors) for p in result.timeline] == [(0, 50)]


@pytest.mark.parametrize(
    ("client", "message"),
    [
        (ClientConfig(protocol=Protocol.TCP, endpoint_urls=("tcp://x:1",)), "HTTP and gRPC"),
        (ClientConfig(protocol=Protocol.HTTP, endpoint_urls=()), "no endpoint"),
        (ClientConfig(protocol=Protocol.HTTP, endpoint_urls=("https://x/",)), "plain http"),
        (ClientConfig(protocol=Protocol.GRPC, endpoint_urls=("x:1",)), "grpc_method"),
        (
            ClientConfig(protocol=Protocol.HTTP, endpoint_urls=("http://x/",), connections=0),
            "connections",
        ),
    ],
)
async def test_invalid_configs_are_rejected(client: ClientConfig, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        await run_builtin(TestConfig(id=new_id(), clients=(client,), duration_s=1.0))


@pytest.mark.parametrize("rps", [0.0, 50.0])
async def test_slow_responses_time_out(http_server: LoopbackServer, rps: float) -> None:
    client = ClientConfig(
        protocol=Protocol.HTTP,
        endpoint_urls=(http_server.url("/delay/400"),),
        connections=2,
        rps=rps,
        request_timeout_s=0.1,
    )

    result = await run_builtin(TestConfig(id=new_id(), clients=(client,), request_count=4))

    assert result.request_count == 0
    assert result.transport_error_counts == {"timeout": 4}
    assert result.error_count == 4


async def test_connections_spread_over_endpoint_urls(http_server: LoopbackServer) -> None:
    client = ClientConfig(
        protocol=Protocol.HTTP,
        endpoint_urls=(http_server.url("/"), http_server.url("/missing")),
        connections=2,
        rps=200,
    )

    result = await run_builtin(TestConfig(id=new_id(), clients=(client,), duration_s=0.5))

    codes = result.http_status_counts
    assert set(codes) == {"200", "404"}  # both URLs were loaded
    assert sum(codes.values()) == 100
    assert min(codes.values()) >= 20  # free connections take turns; roughly half each
