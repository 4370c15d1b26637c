"""The server bootstrap against real clients: health, reflection, limits, ordered shutdown."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import grpc
import grpc.aio
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from meshplane.adapter.v1 import adapter_pb2, adapter_pb2_grpc
from meshplane.coordinator.v1 import coordinator_pb2, coordinator_pb2_grpc
from serving import GrpcServer, ServerConfig
from tests.plugins.grpc_servers import StartGrpcServer
from tests.serving.servicers import (
    ADAPTER_SERVICE,
    COORDINATOR_SERVICE,
    EchoAdapter,
    EchoCoordinator,
)

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


def both_services(adapter: EchoAdapter | None = None) -> list[Any]:
    return [
        (
            adapter_pb2_grpc.add_MeshAdapterServiceServicer_to_server,
            adapter or EchoAdapter(),
            ADAPTER_SERVICE,
        ),
        (
            coordinator_pb2_grpc.add_CoordinatorServiceServicer_to_server,
            EchoCoordinator(),
            COORDINATOR_SERVICE,
        ),
    ]


@pytest.fixture
async def channel_to() -> AsyncIterator[Any]:
    channels: list[Any] = []

    def open_channel(server: GrpcServer) -> Any:
        channel = grpc.aio.insecure_channel(server.address)
        channels.append(channel)
        return channel

    yield open_channel
    for channel in channels:
        await channel.close()


async def test_health_reports_serving_overall_and_per_service(
    start_grpc_server: StartGrpcServer, channel_to: Any
) -> None:
    server = await start_grpc_server(both_services())
    channel = channel_to(server)
    coordinator = coordinator_pb2_grpc.CoordinatorServiceStub(channel)
    listed = await coordinator.ListAdapters(coordinator_pb2.ListAdaptersRequest(), timeout=5)
    assert list(listed.adapters) == []
    health = health_pb2_grpc.HealthStub(channel)
    for name in ("", ADAPTER_SERVICE, COORDINATOR_SERVICE):
        reply = await health.Check(health_pb2.HealthCheckRequest(service=name), timeout=5)
        assert reply.status == SERVING, name
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await health.Check(health_pb2.HealthCheckRequest(service="no.such.Service"), timeout=5)
    assert err.value.code() == grpc.StatusCode.NOT_FOUND

    await server.set_serving(COORDINATOR_SERVICE, False)
    reply = await health.Check(
        health_pb2.HealthCheckRequest(service=COORDINATOR_SERVICE), timeout=5
    )
    assert reply.status == NOT_SERVING


async def test_reflection_lists_every_service(
    start_grpc_server: StartGrpcServer, channel_to: Any
) -> None:
    server = await start_grpc_server(both_services())
    stub = reflection_pb2_grpc.ServerReflectionStub(channel_to(server))

    async def one_request() -> AsyncIterator[Any]:
        yield reflection_pb2.ServerReflectionRequest(list_services="")

    names = set()
    async for reply in stub.ServerReflectionInfo(one_request(), timeout=5):
        names |= {s.name for s in reply.list_services_response.service}
    assert {
        ADAPTER_SERVICE,
        COORDINATOR_SERVICE,
        "grpc.health.v1.Health",
        "grpc.reflection.v1alpha.ServerReflection",
    } <= names

    async def file_request() -> AsyncIterator[Any]:
        yield reflection_pb2.ServerReflectionRequest(file_containing_symbol=ADAPTER_SERVICE)

    async for reply in stub.ServerReflectionInfo(file_request(), timeout=5):
        assert reply.file_descriptor_response.file_descriptor_proto, reply


async def test_oversized_request_is_rejected_and_server_keeps_serving(
    start_grpc_server: StartGrpcServer, channel_to: Any
) -> None:
    limit = 64 * 1024
    server = await start_grpc_server(
        both_services(), config=ServerConfig(port=0, max_message_bytes=limit, grace_seconds=0)
    )
    adapter = adapter_pb2_grpc.MeshAdapterServiceStub(channel_to(server))
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await adapter.ApplyOperation(
            adapter_pb2.ApplyOperationRequest(operation="custom", custom_body="x" * (limit + 1)),
            timeout=5,
        )
    assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED

    info = await adapter.GetInfo(adapter_pb2.GetInfoRequest(), timeout=5)
    assert info.mesh == "echo"
    reply = await adapter.ApplyOperation(
        adapter_pb2.ApplyOperationRequest(operation="custom", custom_body="x" * (limit // 2)),
        timeout=5,
    )
    assert reply.created


async def test_default_limit_rejects_20_mib_and_passes_15_mib_to_the_bounds(
    start_grpc_server: StartGrpcServer, channel_to: Any
) -> None:
    server = await start_grpc_server(both_services())
    assert server.config.max_message_bytes == 16 * 1024 * 1024
    adapter = adapter_pb2_grpc.MeshAdapterServiceStub(channel_to(server))
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await adapter.ApplyOperation(
            adapter_pb2.ApplyOperationRequest(custom_body="y" * (20 * 1024 * 1024)), timeout=10
        )
    assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    # 15 MiB passes the transport; the request bounds then refuse the field, naming it.
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await adapter.ApplyOperation(
            adapter_pb2.ApplyOperationRequest(custom_body="y" * (15 * 1024 * 1024)), timeout=10
        )
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert err.value.details() == "custom_body: 15728640 bytes; at most 1048576 are accepted"


async def test_stop_drains_health_then_in_flight_then_callbacks_then_tasks(
    channel_to: Any,
) -> None:
    journal: list[str] = []
    adapter = EchoAdapter(hold_apply=True)
    adapter.journal = journal
    server = GrpcServer(ServerConfig(port=0, grace_seconds=10))
    for adder, servicer, name in both_services(adapter):
        server.add_service(adder, servicer, name)

    async def record_interrupted() -> None:
        journal.append("callback")

    async def long_lived() -> None:
        try:
            await asyncio.Event().wait()
        finally:
            journal.append("task_cancelled")

    server.on_shutdown("record-interrupted", record_interrupted)
    await server.start()
    server.tasks.start("long-lived", long_lived())

    channel = channel_to(server)
    adapter_stub = adapter_pb2_grpc.MeshAdapterServiceStub(channel)
    in_flight = asyncio.ensure_future(
        adapter_stub.ApplyOperation(adapter_pb2.ApplyOperationRequest(operation_id="slow"))
    )
    await asyncio.wait_for(adapter.apply_entered.wait(), 5)

    watch = health_pb2_grpc.HealthStub(channel).Watch(
        health_pb2.HealthCheckRequest(service=ADAPTER_SERVICE)
    )
    assert (await asyncio.wait_for(watch.read(), 5)).status == SERVING

    started = time.monotonic()
    stopping = asyncio.ensure_future(server.stop())
    assert (await asyncio.wait_for(watch.read(), 5)).status == NOT_SERVING
    journal.append("not_serving_seen")
    # The watch stream ends by itself so it does not hold the grace period open.
    assert await asyncio.wait_for(watch.read(), 5) is grpc.aio.EOF
    assert await watch.code() == grpc.StatusCode.OK

    # The held call is still running inside the grace period and nothing after it has run.
    await asyncio.sleep(0.2)
    assert not in_flight.done()
    assert journal == ["not_serving_seen"]

    adapter.release_apply.set()
    reply = await asyncio.wait_for(in_flight, 5)
    assert reply.operation_id == "slow"
    await asyncio.wait_for(stopping, 9)
    assert time.monotonic() - started < 5, "stop waited for the whole grace period"
    assert journal == ["not_serving_seen", "apply_finished", "callback", "task_cancelled"]

    # After stop, new calls are refused.
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await adapter_stub.GetInfo(adapter_pb2.GetInfoRequest(), timeout=2)
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE
    await server.stop()  # idempotent


async def test_grace_period_bounds_stuck_calls(channel_to: Any) -> None:
    adapter = EchoAdapter(hold_apply=True)
    server = GrpcServer(ServerConfig(port=0, grace_seconds=0.3))
    server.add_service(
        adapter_pb2_grpc.add_MeshAdapterServiceServicer_to_server, adapter, ADAPTER_SERVICE
    )
    await server.start()
    stub = adapter_pb2_grpc.MeshAdapterServiceStub(channel_to(server))
    in_flight = asyncio.ensure_future(stub.ApplyOperation(adapter_pb2.ApplyOperationRequest()))
    await asyncio.wait_for(adapter.apply_entered.wait(), 5)
    started = time.monotonic()
    await server.stop()
    assert time.monotonic() - started < 3
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await asyncio.wait_for(in_flight, 5)
    assert err.value.code() in {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED}


async def test_add_service_rejects_unknown_names_and_late_registration() -> None:
    server = GrpcServer(ServerConfig(port=0, grace_seconds=0))
    with pytest.raises(ValueError, match="unknown gRPC service"):
        server.add_service(
            adapter_pb2_grpc.add_MeshAdapterServiceServicer_to_server,
            EchoAdapter(),
            "meshplane.adapter.v1.NoSuchService",
        )
    server.add_service(
        adapter_pb2_grpc.add_MeshAdapterServiceServicer_to_server, EchoAdapter(), ADAPTER_SERVICE
    )
    with pytest.raises(ValueError, match="already added"):
        server.add_service(
            adapter_pb2_grpc.add_MeshAdapterServiceServicer_to_server,
            EchoAdapter(),
            ADAPTER_SERVICE,
        )
    await server.start()
    try:
        assert server.port > 0
        with pytest.raises(RuntimeError, match="before start"):
            server.add_service(
                coordinator_pb2_grpc.add_CoordinatorServiceServicer_to_server,
                EchoCoordinator(),
                COORDINATOR_SERVICE,
            )
    finally:
        await server.stop()


async def test_failing_shutdown_callback_does_not_stop_the_others(channel_to: Any) -> None:
    ran: list[str] = []
    server = GrpcServer(ServerConfig(port=0, grace_seconds=0))

    async def first() -> None:
        ran.append("first")

    async def broken() -> None:
        raise RuntimeError("boom")

    server.on_shutdown("first", first)
    server.on_shutdown("broken", broken)
    await server.start()
    await server.stop()
    assert ran == ["first"]


def test_channel_options_carry_limits_and_keepalive() -> None:
    options = dict(ServerConfig(max_message_bytes=1234).channel_options())
    assert options["grpc.max_receive_message_length"] == 1234
    assert options["grpc.max_send_message_length"] == 1234
    assert options["grpc.keepalive_time_ms"] == 30_000
    assert options["grpc.keepalive_timeout_ms"] == 10_000
    assert options["grpc.http2.max_pings_without_data"] == 0
    assert "grpc.http2.min_ping_interval_without_data_ms" in options


async def test_a_service_added_only_as_registered_method_handlers_is_still_served(
    start_grpc_server: StartGrpcServer, channel_to: Any
) -> None:
    # Servicer adders see every handler as generic (one pending request per call instead of one
    # per method); an adder that only uses the pre-registered route must not be dropped.
    def add_registered_only(servicer: Any, server: Any) -> None:
        handler = grpc.unary_unary_rpc_method_handler(
            servicer.GetInfo,
            request_deserializer=adapter_pb2.GetInfoRequest.FromString,
            response_serializer=adapter_pb2.GetInfoResponse.SerializeToString,
        )
        server.add_registered_method_handlers(ADAPTER_SERVICE, {"GetInfo": handler})

    class Info:
        async def GetInfo(self, request: Any, context: Any) -> adapter_pb2.GetInfoResponse:
            return adapter_pb2.GetInfoResponse(mesh="registered-only")

    server = await start_grpc_server([(add_registered_only, Info(), ADAPTER_SERVICE)])
    stub = adapter_pb2_grpc.MeshAdapterServiceStub(channel_to(server))
    reply = await stub.GetInfo(adapter_pb2.GetInfoRequest(), timeout=5)
    assert reply.mesh == "registered-only"
