"""Small loopback servers the perf tests and benchmarks load: HTTP/1.1 and gRPC (health).

Run as a subprocess (`python -m tests.coordinator.perf.loopback_servers http|grpc ...`) so the
server has its own process and GIL: it prints its port on the first line of stdout. The HTTP
server can stall the *whole process* once (time.sleep), like a GC pause, to check that the
generator reports coordinated omission correctly. Paths: `/` 200, `/missing` 404, `/chunked` a
chunked 200, `/delay/<ms>` a 200 after that many milliseconds (without blocking).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import time

_RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok"
_NOT_FOUND = b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"
_CHUNKED = (
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n4;ext=1\r\ndefg\r\n0\r\n\r\n"
)


class _Stall:
    def __init__(self, after: int, seconds: float) -> None:
        self.after = after
        self.seconds = seconds
        self.seen = 0

    def tick(self) -> None:
        self.seen += 1
        if self.after and self.seen == self.after:
            time.sleep(self.seconds)  # blocks the whole server, on purpose


class _HttpServerProtocol(asyncio.Protocol):
    def __init__(self, stall: _Stall) -> None:
        self._stall = stall
        self._buffer = b""
        self._transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        while True:
            end = self._buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = self._buffer[:end]
            length = 0
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            if len(self._buffer) < end + 4 + length:
                return
            self._buffer = self._buffer[end + 4 + length :]
            self._stall.tick()
            path = head.split(b" ", 2)[1]
            assert self._transport is not None
            if path.startswith(b"/delay/"):
                delay_s = float(path[len(b"/delay/") :]) / 1000.0
                asyncio.get_running_loop().call_later(delay_s, self._transport.write, _RESPONSE)
            elif path == b"/missing":
                self._transport.write(_NOT_FOUND)
            elif path == b"/chunked":
                self._transport.write(_CHUNKED)
            else:
                self._transport.write(_RESPONSE)


async def _serve_http(stall: _Stall) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: _HttpServerProtocol(stall), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    sys.stdout.write(f"{port}\n")
    sys.stdout.flush()
    async with server:
        await server.serve_forever()


async def _serve_grpc() -> None:
    import grpc
    from grpc_health.v1 import health, health_pb2, health_pb2_grpc
    from grpc_reflection.v1alpha import reflection

    server = grpc.aio.server()
    servicer = health.aio.HealthServicer()
    await servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    reflection.enable_server_reflection(
        (health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME),
        server,
    )
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    sys.stdout.write(f"{port}\n")
    sys.stdout.flush()
    await server.wait_for_termination()


def main() -> None:
    """Parse arguments and serve until killed."""
    parser = argparse.ArgumentParser()
    parser.add_argument("kind", choices=("http", "grpc"))
    parser.add_argument("--stall-after", type=int, default=0)
    parser.add_argument("--stall-ms", type=float, default=0.0)
    args = parser.parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        if args.kind == "http":
            asyncio.run(_serve_http(_Stall(args.stall_after, args.stall_ms / 1000.0)))
        else:
            asyncio.run(_serve_grpc())


if __name__ == "__main__":
    main()
