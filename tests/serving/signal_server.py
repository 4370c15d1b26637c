"""A tiny server process for the SIGTERM test: ``python -m tests.serving.signal_server GRACE``.

It logs JSON lines to stderr; the test finds the bound address in the ``grpc.server_started``
line, so nothing is printed.
"""

from __future__ import annotations

import asyncio
import sys

import structlog

from meshplane.adapter.v1 import adapter_pb2_grpc
from serving import GrpcServer, ServerConfig, configure_logging
from tests.serving.servicers import ADAPTER_SERVICE, EchoAdapter


async def main(grace_seconds: float) -> None:
    configure_logging(level="info", json=True)
    server = GrpcServer(ServerConfig(host="127.0.0.1", port=0, grace_seconds=grace_seconds))
    server.add_service(
        adapter_pb2_grpc.add_MeshAdapterServiceServicer_to_server, EchoAdapter(), ADAPTER_SERVICE
    )

    async def on_shutdown() -> None:
        structlog.get_logger(__name__).info("test.shutdown_callback_ran")

    server.on_shutdown("announce", on_shutdown)
    await server.serve_until_signalled()


if __name__ == "__main__":
    asyncio.run(main(float(sys.argv[1]) if len(sys.argv) > 1 else 5.0))
