"""A second, plaintext gRPC listener that serves only ``grpc.health.v1.Health``.

Kubelet's ``grpc:`` probes speak plaintext only, so a server that serves (m)TLS on its main
port needs another port for them. This listener answers Check and Watch from the main server's
own `HealthService` object, so both ports always report the same statuses (NOT_SERVING while
draining included). Nothing else is registered here: any other method is UNIMPLEMENTED and
there is no reflection, so the plaintext port reveals serving status and nothing more.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import grpc.aio
import structlog
from grpc_health.v1 import health_pb2_grpc

from serving.health import HealthService

__all__ = ["HealthListener"]

_log = structlog.get_logger(__name__)


class HealthListener:
    """Serves one `HealthService` on ``host:port`` in plaintext; ``port=0`` lets the kernel pick.

    ``host`` is in bind form (an IPv6 address in brackets), as the main server binds it.
    """

    def __init__(
        self,
        health: HealthService,
        *,
        host: str,
        port: int,
        options: Sequence[tuple[str, Any]] = (),
    ) -> None:
        self._bind = f"{host}:{port}"
        self._server: Any = grpc.aio.server(options=list(options))
        health_pb2_grpc.add_HealthServicer_to_server(health, self._server)
        self._port: int | None = None
        self._started = False
        self._closed = False

    @property
    def port(self) -> int:
        """The bound port (after :meth:`bind`)."""
        if self._port is None:
            raise RuntimeError("health listener not bound")
        return self._port

    def bind(self) -> int:
        """Claim the port (before the main server starts, so a clash fails the start)."""
        port = self._server.add_insecure_port(self._bind)
        if not port:
            raise OSError(f"could not bind the health listener to {self._bind}")
        self._port = int(port)
        return self._port

    async def start(self) -> None:
        """Start answering health calls on the bound port."""
        await self._server.start()
        self._started = True
        _log.info("grpc.health_listener_started", bind=self._bind, port=self._port)

    async def stop(self, grace_seconds: float | None) -> None:
        """Close the port; Watch streams have already ended when the health service drained.

        ``grpc.aio`` releases a bound port only when a started server stops, so a listener bound
        for a start that failed is started and stopped at once.
        """
        if self._port is None or self._closed:
            return
        self._closed = True
        if not self._started:
            await self._server.start()
            await self._server.stop(0)
        else:
            await self._server.stop(grace_seconds)
            _log.info("grpc.health_listener_stopped", port=self._port)
