"""The ``grpc.health.v1.Health`` service, with a drain step that ends Watch streams.

grpcio's own asyncio health servicer keeps every Watch stream open forever, so one coordinator
watching an adapter would hold that adapter's shutdown for the whole grace period. Here, once
the server starts draining, each watcher receives NOT_SERVING and its stream then ends with OK;
only real work in flight keeps the grace period running.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
SERVICE_UNKNOWN = health_pb2.HealthCheckResponse.SERVICE_UNKNOWN


class HealthService(health_pb2_grpc.HealthServicer):  # type: ignore[misc]
    """Per-service serving status; ``""`` is the server as a whole."""

    def __init__(self) -> None:
        self._status: dict[str, Any] = {"": SERVING}
        self._version = 0
        self._changed = asyncio.Condition()
        self._draining = False

    @property
    def draining(self) -> bool:
        """True once :meth:`drain` ran; statuses are frozen at NOT_SERVING from then on."""
        return self._draining

    def status(self, service: str) -> Any:
        """Current status of ``service`` (SERVICE_UNKNOWN when never set)."""
        return self._status.get(service, SERVICE_UNKNOWN)

    async def set(self, service: str, serving: bool) -> None:
        """Mark one service; ignored while draining so nothing flips back to SERVING."""
        if self._draining:
            return
        await self._publish({service: SERVING if serving else NOT_SERVING})

    async def drain(self) -> None:
        """Every known service NOT_SERVING, for good; watchers get it and their streams end."""
        if self._draining:
            return
        self._draining = True
        await self._publish(dict.fromkeys(self._status, NOT_SERVING))

    async def _publish(self, updates: dict[str, Any]) -> None:
        async with self._changed:
            self._status.update(updates)
            self._version += 1
            self._changed.notify_all()

    async def Check(self, request: Any, context: Any) -> Any:
        """Unary check; unknown services are NOT_FOUND as the health protocol requires."""
        status = self._status.get(request.service)
        if status is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"unknown service {request.service!r}")
        return health_pb2.HealthCheckResponse(status=status)

    async def Watch(self, request: Any, context: Any) -> AsyncGenerator[Any, None]:
        """Send the status now and on every change; end the stream after draining."""
        sent: Any = None
        while True:
            seen = self._version
            status = self.status(request.service)
            if status != sent:
                yield health_pb2.HealthCheckResponse(status=status)
                sent = status
                continue  # the status may have changed while the message was being sent
            if self._draining:
                return
            async with self._changed:
                await self._changed.wait_for(lambda: self._version != seen)  # noqa: B023
