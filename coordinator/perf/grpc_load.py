"""gRPC unary load: resolve any method by server reflection and build its request from JSON.

The request message is built once (JSON -> message via the reflected descriptor -> bytes) and
sent as raw bytes on every call, so the hot path does no protobuf work; responses are not
decoded. Each "connection" is its own channel with a private subchannel pool, so N connections
really are N HTTP/2 connections.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from dataclasses import dataclass

import grpc
from google.protobuf import descriptor_pool, json_format, message_factory
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)

from coordinator.perf.recording import Tally
from coordinator.perf.scheduling import Schedule
from coordinator.perf.transports import TransportError
from serving.input_quoting import quoted

_OWN_SUBCHANNELS = ("grpc.use_local_subchannel_pool", 1)


@dataclass(frozen=True, kw_only=True)
class GrpcTarget:
    """A resolved unary method: where, which path, and the serialised request."""

    address: str
    path: str
    payload: bytes
    metadata: tuple[tuple[str, str], ...]


def grpc_address(url: str) -> str:
    """`grpc://host:port`, `http://host:port` or `host:port` -> `host:port`."""
    for scheme in ("grpc://", "http://"):
        if url.startswith(scheme):
            url = url[len(scheme) :]
    return url.rstrip("/")


def _split_method(method: str) -> tuple[str, str]:
    service, sep, name = method.strip("/").rpartition("/")
    if not sep or not service or not name:
        raise ValueError(f"gRPC method must be 'package.Service/Method', got {quoted(method)}")
    return service, name


def _resolve_blocking(address: str, method: str, body_json: str) -> bytes:
    service_name, method_name = _split_method(method)
    with grpc.insecure_channel(address) as channel:
        pool = descriptor_pool.DescriptorPool(ProtoReflectionDescriptorDatabase(channel))
        try:
            service = pool.FindServiceByName(service_name)
        except KeyError as exc:
            raise ValueError(
                f"service {quoted(service_name)} not found by reflection at {address}"
            ) from exc
        found = service.methods_by_name.get(method_name)
        if found is None:
            raise ValueError(f"method {quoted(method_name)} not found in {quoted(service_name)}")
        if found.client_streaming or found.server_streaming:
            raise ValueError(f"{method} is a streaming method; only unary methods are supported")
        request_class = message_factory.GetMessageClass(found.input_type)
        try:
            request = json_format.Parse(body_json or "{}", request_class())
        except json_format.ParseError as exc:
            raise ValueError(
                f"request JSON does not fit {found.input_type.full_name}: {exc}"
            ) from exc
        return request.SerializeToString()


async def resolve_target(
    url: str, method: str, body_json: str, headers: Mapping[str, str] | None = None
) -> GrpcTarget:
    """Ask the server's reflection service for `method` and encode `body_json` as its request."""
    address = grpc_address(url)
    try:
        payload = await asyncio.to_thread(_resolve_blocking, address, method, body_json)
    except grpc.RpcError as exc:
        raise ValueError(f"server reflection failed at {address}: {exc}") from exc
    service, name = _split_method(method)
    metadata = tuple((key.lower(), value) for key, value in (headers or {}).items())
    return GrpcTarget(
        address=address, path=f"/{service}/{name}", payload=payload, metadata=metadata
    )


class GrpcConnection:
    """One channel calling one unary method; `request()` returns the gRPC code name."""

    def __init__(self, target: GrpcTarget, timeout_s: float) -> None:
        self._target = target
        self._timeout_s = timeout_s
        self._channel = grpc.aio.insecure_channel(target.address, options=[_OWN_SUBCHANNELS])
        self._call = self._channel.unary_unary(target.path)
        self._metadata = target.metadata or None

    async def request(self) -> str:
        """One unary call; any status (OK or not) is an answer, only cancellation is not."""
        try:
            await self._call(self._target.payload, timeout=self._timeout_s, metadata=self._metadata)
        except grpc.aio.AioRpcError as exc:
            return str(exc.code().name)
        except asyncio.CancelledError:
            raise
        except grpc.RpcError as exc:
            raise TransportError("rpc") from exc
        return "OK"

    async def run_closed_loop(self, schedule: Schedule, tally: Tally) -> None:
        """Call back-to-back until the schedule is exhausted, counting into `tally`."""
        clock = time.monotonic
        call = self._call
        payload = self._target.payload
        metadata = self._metadata
        timeout = self._timeout_s
        while schedule.next_index() is not None:
            sent = clock()
            try:
                await call(payload, timeout=timeout, metadata=metadata)
            except grpc.aio.AioRpcError as exc:
                done = clock()
                tally.response(str(exc.code().name), done - sent, True, done)
                continue
            done = clock()
            tally.response("OK", done - sent, False, done)

    def failed(self, code: str) -> bool:
        """Every code but OK is a failure."""
        return code != "OK"

    async def close(self) -> None:
        """Close the channel."""
        await self._channel.close()
