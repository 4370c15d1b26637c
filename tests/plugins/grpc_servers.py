"""Fixture for tests that need a real ``serving.GrpcServer`` on 127.0.0.1:0, stopped afterwards."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

import pytest

from serving import GrpcServer, ServerConfig

# (generated add_*_to_server function, servicer instance, full service name)
ServiceSpec = tuple[Callable[[Any, Any], None], Any, str]
StartGrpcServer = Callable[..., Awaitable[GrpcServer]]


@pytest.fixture
async def start_grpc_server() -> AsyncIterator[StartGrpcServer]:
    """Factory: ``await start_grpc_server(services, config=ServerConfig(...))`` → started server.

    Every server started through it is stopped (grace 0) when the test ends, even on failure.
    """
    started: list[GrpcServer] = []

    async def start(
        services: Sequence[ServiceSpec], *, config: ServerConfig | None = None
    ) -> GrpcServer:
        server = GrpcServer(config or ServerConfig(host="127.0.0.1", port=0, grace_seconds=0))
        for adder, servicer, name in services:
            server.add_service(adder, servicer, name)
        await server.start()
        started.append(server)
        return server

    yield start
    for server in reversed(started):
        await server.stop(grace_seconds=0)
