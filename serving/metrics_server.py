"""``GET /metrics`` in Prometheus text format over HTTP, on the server's own event loop.

The adapter and the coordinator each pass how to render their registry (the coordinator reads
its store first, hence a coroutine). Port 0 picks a free port; the bound URL is logged.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import structlog
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

__all__ = ["MetricsServer"]

_log = structlog.get_logger(__name__)

Render = Callable[[], Awaitable[bytes]]


class MetricsServer:
    """``GET /metrics`` over HTTP (aiohttp) serving what ``render`` returns."""

    def __init__(self, render: Render, *, host: str, port: int) -> None:
        self._render = render
        self._host = host
        self._port = port
        self._runner: web.AppRunner | None = None
        self.bound_port = 0

    @property
    def url(self) -> str:
        """Scrape URL (after start)."""
        host = "127.0.0.1" if self._host in ("0.0.0.0", "", "::") else self._host
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.bound_port}/metrics"

    async def _handle(self, request: web.Request) -> web.Response:
        return web.Response(
            body=await self._render(), headers={"Content-Type": CONTENT_TYPE_LATEST}
        )

    async def start(self) -> None:
        """Bind and serve."""
        app = web.Application()
        app.router.add_get("/metrics", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self._host, self._port)
        await site.start()
        server = site._server
        sockets = getattr(server, "sockets", None) or ()
        self.bound_port = int(sockets[0].getsockname()[1]) if sockets else self._port
        _log.info("metrics.server_started", url=self.url)

    async def stop(self) -> None:
        """Close the listener."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
