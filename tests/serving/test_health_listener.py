"""The plaintext health port: the main server's statuses, nothing else, closed last on stop."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from typing import Any

import grpc
import grpc.aio
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2_grpc

from meshplane.adapter.v1 import adapter_pb2, adapter_pb2_grpc
from serving import GrpcServer, ServerConfig
from tests.plugins.grpc_servers import StartGrpcServer
from tests.serving.servicers import ADAPTER_SERVICE, EchoAdapter

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


@pytest.fixture
async def plaintext() -> AsyncIterator[Any]:
    """Opens plaintext channels to ``127.0.0.1:port``; closes them after the test."""
    channels: list[Any] = []

    def open_channel(port: int) -> Any:
        channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
        channels.append(channel)
        return channel

    yield open_channel
    for channel in channels:
        await channel.close()


def _adapter_service(adapter: EchoAdapter | None = None) -> list[Any]:
    return [
        (
            adapter_pb2_grpc.add_MeshAdapterServiceServicer_to_server,
            adapter or EchoAdapter(),
            ADAPTER_SERVICE,
        )
    ]


async def _check(channel: Any, service: str) -> Any:
    stub = health_pb2_grpc.HealthStub(channel)
    reply = await stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
    return reply.status


async def test_health_port_reports_the_main_servers_statuses(
    start_grpc_server: StartGrpcServer, plaintext: Any
) -> None:
    server = await start_grpc_server(
        _adapter_service(), config=ServerConfig(port=0, grace_seconds=0, health_port=0)
    )
    assert server.health_port is not None and server.health_port != server.port
    health = plaintext(server.health_port)
    assert await _check(health, "") == SERVING
    assert await _check(health, ADAPTER_SERVICE) == SERVING
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await _check(health, "no.such.Service")
    assert err.value.code() == grpc.StatusCode.NOT_FOUND

    await server.set_serving(ADAPTER_SERVICE, False)
    assert await _check(health, ADAPTER_SERVICE) == NOT_SERVING
    await server.set_serving(ADAPTER_SERVICE, True)
    watch = health_pb2_grpc.HealthStub(health).Watch(
        health_pb2.HealthCheckRequest(service=ADAPTER_SERVICE), timeout=5
    )
    assert (await watch.read()).status == SERVING
    await server.set_serving(ADAPTER_SERVICE, False)
    assert (await watch.read()).status == NOT_SERVING
    watch.cancel()


async def test_health_port_serves_nothing_but_health(
    start_grpc_server: StartGrpcServer, plaintext: Any
) -> None:
    server = await start_grpc_server(
        _adapter_service(), config=ServerConfig(port=0, grace_seconds=0, health_port=0)
    )
    assert server.health_port is not None
    health = plaintext(server.health_port)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await adapter_pb2_grpc.MeshAdapterServiceStub(health).GetInfo(
            adapter_pb2.GetInfoRequest(), timeout=5
        )
    assert err.value.code() == grpc.StatusCode.UNIMPLEMENTED

    # Reflection is a bidirectional stream. The call opens without writing a request: the
    # server answers an unknown method at once, and a client write racing that answer fails on
    # the client's side (INTERNAL "Internal error from Core"), which says nothing about us.
    reflection = reflection_pb2_grpc.ServerReflectionStub(health).ServerReflectionInfo(timeout=5)
    assert await reflection.code() == grpc.StatusCode.UNIMPLEMENTED
    # The main port still serves the service itself.
    info = await adapter_pb2_grpc.MeshAdapterServiceStub(plaintext(server.port)).GetInfo(
        adapter_pb2.GetInfoRequest(), timeout=5
    )
    assert info.mesh == "echo"


async def test_health_port_says_not_serving_while_draining_and_closes_after_the_main_port(
    plaintext: Any,
) -> None:
    adapter = EchoAdapter(hold_apply=True)
    server = GrpcServer(ServerConfig(port=0, grace_seconds=10, health_port=0))
    for adder, servicer, name in _adapter_service(adapter):
        server.add_service(adder, servicer, name)
    callback_ran = asyncio.Event()
    release_callback = asyncio.Event()

    async def record_interrupted() -> None:
        callback_ran.set()
        await release_callback.wait()

    server.on_shutdown("record-interrupted", record_interrupted)
    await server.start()
    assert server.health_port is not None
    main, health = plaintext(server.port), plaintext(server.health_port)
    try:
        in_flight = asyncio.ensure_future(
            adapter_pb2_grpc.MeshAdapterServiceStub(main).ApplyOperation(
                adapter_pb2.ApplyOperationRequest(operation_id="slow"), timeout=10
            )
        )
        await asyncio.wait_for(adapter.apply_entered.wait(), 5)
        watch = health_pb2_grpc.HealthStub(health).Watch(
            health_pb2.HealthCheckRequest(service=ADAPTER_SERVICE), timeout=10
        )
        assert (await watch.read()).status == SERVING

        stopping = asyncio.ensure_future(server.stop())
        assert (await asyncio.wait_for(watch.read(), 5)).status == NOT_SERVING
        assert await asyncio.wait_for(watch.read(), 5) is grpc.aio.EOF
        # Draining: the held call keeps the main server up; the health port says NOT_SERVING.
        assert await _check(health, ADAPTER_SERVICE) == NOT_SERVING
        assert await _check(health, "") == NOT_SERVING
        assert not in_flight.done()

        adapter.release_apply.set()
        assert (await asyncio.wait_for(in_flight, 5)).operation_id == "slow"
        # The main port has stopped; the health port still answers while callbacks run.
        await asyncio.wait_for(callback_ran.wait(), 5)
        assert await _check(health, "") == NOT_SERVING
        release_callback.set()
        await asyncio.wait_for(stopping, 9)
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await _check(health, "")
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE
    finally:
        adapter.release_apply.set()
        release_callback.set()
        await server.stop(grace_seconds=0)


async def test_health_port_off_by_default(start_grpc_server: StartGrpcServer) -> None:
    server = await start_grpc_server(_adapter_service())
    assert server.health_port is None


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.mark.parametrize("busy", ["main", "health"])
async def test_a_port_in_use_fails_the_start_and_leaves_the_other_port_free(busy: str) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy_port, free_port = taken.getsockname()[1], _free_port()
        ports = (busy_port, free_port) if busy == "main" else (free_port, busy_port)
        server = GrpcServer(ServerConfig(port=ports[0], grace_seconds=0, health_port=ports[1]))
        for adder, servicer, name in _adapter_service():
            server.add_service(adder, servicer, name)
        with pytest.raises((OSError, RuntimeError)):
            await server.start()
        await server.stop(grace_seconds=0)
    with socket.socket() as again:
        again.bind(("127.0.0.1", free_port))  # released (or never taken)
