"""The built-in gRPC generator: any unary method, request built from JSON by server reflection."""

from __future__ import annotations

import pytest

from coordinator.perf import ClientConfig, Protocol, TestConfig, new_id, run_builtin
from tests.coordinator.perf.conftest import LoopbackServer

CHECK = "grpc.health.v1.Health/Check"


def _config(address: str, body: str, *, method: str = CHECK, **kwargs: float) -> TestConfig:
    client = ClientConfig(
        protocol=Protocol.GRPC,
        endpoint_urls=(address,),
        connections=2,
        grpc_method=method,
        body=body,
        **kwargs,  # type: ignore[arg-type]
    )
    return TestConfig(id=new_id(), clients=(client,), duration_s=1.0)


@pytest.mark.timing
async def test_constant_rate_unary_calls_count_ok(grpc_server: LoopbackServer) -> None:
    result = await run_builtin(_config(f"grpc://{grpc_server.address}", '{"service": ""}', rps=200))

    assert result.grpc_code_counts == {"OK": 200}
    assert result.http_status_counts == {}
    assert result.error_count == 0
    assert result.actual_qps == pytest.approx(200, rel=0.05)
    assert 0 < result.latencies.p50_ms < 100


async def test_request_is_built_from_json_and_non_ok_codes_are_counted(
    grpc_server: LoopbackServer,
) -> None:
    config = _config(grpc_server.address, '{"service": "no.such.Service"}')
    config = TestConfig(id=config.id, clients=config.clients, request_count=40)

    result = await run_builtin(config)

    # the health service answers NOT_FOUND for an unknown service name: the JSON field arrived
    assert result.grpc_code_counts == {"NOT_FOUND": 40}
    assert result.error_count == 40
    assert result.request_count == 40


async def test_max_throughput_grpc(grpc_server: LoopbackServer) -> None:
    config = _config(grpc_server.address, "{}")
    config = TestConfig(id=config.id, clients=config.clients, request_count=500)

    result = await run_builtin(config)

    assert result.grpc_code_counts == {"OK": 500}
    assert result.actual_qps > 100


@pytest.mark.parametrize(
    ("method", "body", "message"),
    [
        ("grpc.health.v1.Health/Nope", "{}", "not found"),
        ("no.such.Service/Call", "{}", "not found by reflection"),
        ("grpc.health.v1.Health/Watch", "{}", "streaming"),
        (CHECK, '{"unknown_field": 1}', "does not fit"),
        ("Check", "{}", "package.Service/Method"),
    ],
)
async def test_bad_methods_and_bodies_are_rejected(
    grpc_server: LoopbackServer, method: str, body: str, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        await run_builtin(_config(grpc_server.address, body, method=method, rps=10))
