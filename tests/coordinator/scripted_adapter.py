"""A scripted adapter and a small registry, for exercising the event hub over real gRPC.

`ScriptedAdapter` implements the adapter RPCs the hub uses (GetInfo, StreamEvents,
GetOperation) over an in-memory event log the test appends to; it can end streams with
RESOURCE_EXHAUSTED after a number of events (as a real adapter does with a slow follower),
change its event stream id (a lost event log), and it records every StreamEvents request.
`StaticRegistry` is the registry surface the hub reads, with real channels.

ApplyOperation behaves as the adapter kit did before events were capped: it records the
operation and emits "accepted" (details "requested by <username>", however long) and
"succeeded". ``python -m tests.coordinator.scripted_adapter`` serves one as a process (it prints
``{"grpc": "host:port"}`` and stops on SIGTERM), for end-to-end tests of a hostile adapter.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import grpc
import grpc.aio

from meshplane.adapter.v1 import adapter_pb2 as pb
from meshplane.adapter.v1 import adapter_pb2_grpc as pb_grpc
from serving import GrpcServer, ServerConfig, dial
from serving.message_limits import adapter_channel_options
from serving.request_bounds import BOUNDS, FieldBound, RequestBounds

SERVICE = "meshplane.adapter.v1.MeshAdapterService"


class ScriptedAdapter(pb_grpc.MeshAdapterServiceServicer):  # type: ignore[misc, unused-ignore]
    """An adapter whose event log, operations and stream endings the test controls."""

    def __init__(self, *, mesh: str = "toy", stream_id: str = "stream-1") -> None:
        self.mesh = mesh
        self.stream_id = stream_id
        self.events: list[pb.Event] = []
        self.operations: dict[str, pb.Operation] = {}
        self.requests: list[int] = []
        self.exhaust_after: int | None = None
        """End each stream with RESOURCE_EXHAUSTED after sending this many events."""
        self.fail_before: dict[int, tuple[Any, str]] = {}
        """Sequence -> (status, details): streams fail with it instead of sending that event."""
        self.oldest_retained = 1
        """Events before it are gone (retention): an earlier resume point is OUT_OF_RANGE."""
        self._changed = asyncio.Condition()

    async def emit(
        self,
        count: int = 1,
        *,
        operation_id: str = "",
        state: int = pb.OPERATION_STATE_UNSPECIFIED,
        severity: int = pb.EVENT_SEVERITY_INFO,
        details: str = "",
        summary: str = "",
    ) -> list[pb.Event]:
        """Append events to the log and wake the streams."""
        added = []
        for _ in range(count):
            event = pb.Event(
                sequence=len(self.events) + 1,
                operation_id=operation_id,
                severity=severity,  # type: ignore[arg-type]
                summary=summary or f"event {len(self.events) + 1}",
                details=details,
                operation_state=state,  # type: ignore[arg-type]
                mesh=self.mesh,
                event_stream_id=self.stream_id,
                operation="install" if operation_id else "",
            )
            event.timestamp.GetCurrentTime()
            self.events.append(event)
            added.append(event)
        async with self._changed:
            self._changed.notify_all()
        return added

    async def reset_log(self, stream_id: str) -> None:
        """Lose the event log: a new stream id, sequences from 1 again."""
        self.stream_id = stream_id
        self.events = []
        async with self._changed:
            self._changed.notify_all()

    async def _unimplemented(self, request: Any, context: Any) -> Any:
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, "not scripted")

    ListMeshVersions = _unimplemented
    CancelOperation = _unimplemented
    GetMeshStatus = _unimplemented

    async def ListOperations(
        self, request: pb.ListOperationsRequest, context: Any
    ) -> pb.ListOperationsResponse:
        return pb.ListOperationsResponse(
            operations=[pb.OperationDescriptor(id="install", supports_delete=True)]
        )

    async def ApplyOperation(
        self, request: pb.ApplyOperationRequest, context: Any
    ) -> pb.ApplyOperationResponse:
        """Record and finish at once, with the uncapped "requested by" details of old."""
        operation_id = request.operation_id or f"op-{len(self.operations) + 1}"
        existing = self.operations.get(operation_id)
        if existing is not None:
            return pb.ApplyOperationResponse(
                operation_id=operation_id, operation=existing, created=False
            )
        operation = pb.Operation(
            operation_id=operation_id,
            operation=request.operation,
            mesh=self.mesh,
            namespace=request.namespace or "toy-system",
            delete=request.delete,
            parameters=dict(request.parameters),
            username=request.username,
            state=pb.OPERATION_STATE_SUCCEEDED,
            clusters=[c.name for c in request.clusters] or ["default"],
            attempt=1,
        )
        operation.create_time.GetCurrentTime()
        self.operations[operation_id] = operation
        await self.emit(
            operation_id=operation_id,
            state=pb.OPERATION_STATE_PENDING,
            summary=f"{request.operation} accepted, attempt 1",
            details=f"requested by {request.username}" if request.username else "",
        )
        await self.emit(
            operation_id=operation_id,
            state=pb.OPERATION_STATE_SUCCEEDED,
            summary=f"{request.operation} succeeded",
        )
        return pb.ApplyOperationResponse(
            operation_id=operation_id, operation=operation, created=True
        )

    async def GetInfo(self, request: pb.GetInfoRequest, context: Any) -> pb.GetInfoResponse:
        return pb.GetInfoResponse(
            mesh=self.mesh,
            adapter_version="0.0.1",
            contract_version="v1",
            event_stream_id=self.stream_id,
        )

    async def GetOperation(
        self, request: pb.GetOperationRequest, context: Any
    ) -> pb.GetOperationResponse:
        operation = self.operations.get(request.operation_id)
        if operation is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"no operation {request.operation_id}")
        return pb.GetOperationResponse(operation=operation)

    async def StreamEvents(
        self, request: pb.StreamEventsRequest, context: Any
    ) -> AsyncIterator[pb.StreamEventsResponse]:
        self.requests.append(request.after_sequence)
        stream_id = self.stream_id
        if request.after_sequence > len(self.events):
            await context.abort(grpc.StatusCode.OUT_OF_RANGE, "beyond the newest event")
        if 0 < request.after_sequence < self.oldest_retained - 1:
            await context.abort(grpc.StatusCode.OUT_OF_RANGE, "no longer retained")
        position = max(request.after_sequence, self.oldest_retained - 1)
        sent = 0
        while True:
            if self.stream_id != stream_id:
                await context.abort(grpc.StatusCode.UNAVAILABLE, "event log reset")
            while position < len(self.events):
                failure = self.fail_before.get(position + 1)
                if failure is not None:
                    await context.abort(*failure)
                if self.exhaust_after is not None and sent >= self.exhaust_after:
                    await context.abort(
                        grpc.StatusCode.RESOURCE_EXHAUSTED,
                        f"resume with after_sequence={position}",
                    )
                yield pb.StreamEventsResponse(event=self.events[position])
                position += 1
                sent += 1
            async with self._changed:
                await self._changed.wait_for(partial(self._moved, position, stream_id))

    def _moved(self, position: int, stream_id: str) -> bool:
        return position < len(self.events) or self.stream_id != stream_id


LAX_BOUNDS = RequestBounds(
    {**BOUNDS, "meshplane.adapter.v1.ApplyOperationRequest.username": FieldBound(max_bytes=8 << 20)}
)
"""A scripted adapter stands in for one whose limits are not meshplane's: it takes usernames of
megabytes, so its events can be larger than a coordinator may read."""


async def serve(adapter: ScriptedAdapter, port: int = 0) -> GrpcServer:
    """Start a gRPC server for ``adapter`` on 127.0.0.1 (``port`` 0: any)."""
    server = GrpcServer(
        ServerConfig(host="127.0.0.1", port=port, grace_seconds=0), bounds=LAX_BOUNDS
    )
    server.add_service(pb_grpc.add_MeshAdapterServiceServicer_to_server, adapter, SERVICE)
    await server.start()
    return server


@dataclass(frozen=True, kw_only=True)
class Replica:
    address: str
    mesh: str


@dataclass(frozen=True, kw_only=True)
class Change:
    kind: str
    replica: Replica


class StaticRegistry:
    """Replicas added and removed by the test, one real channel each."""

    def __init__(self) -> None:
        self._replicas: dict[str, Replica] = {}
        self._channels: dict[str, Any] = {}
        self._listeners: list[Callable[[Any], Any]] = []

    def replicas(self, mesh: str | None = None) -> list[Replica]:
        return [r for r in self._replicas.values() if mesh is None or r.mesh == mesh]

    def channel(self, address: str) -> Any:
        return self._channels[address]

    def add_listener(self, callback: Callable[[Any], Any]) -> Callable[[], None]:
        self._listeners.append(callback)
        return lambda: self._listeners.remove(callback)

    def add(self, address: str, mesh: str) -> None:
        replica = Replica(address=address, mesh=mesh)
        self._replicas[address] = replica
        self._channels[address] = dial(address, tls=None, options=adapter_channel_options())
        for listener in self._listeners:
            listener(Change(kind="added", replica=replica))

    async def remove(self, address: str) -> None:
        replica = self._replicas.pop(address)
        for listener in self._listeners:
            listener(Change(kind="removed", replica=replica))
        await self._channels.pop(address).close()

    async def close(self) -> None:
        for channel in self._channels.values():
            await channel.close()
        self._channels.clear()


async def _serve_forever(port: int) -> None:
    server = await serve(ScriptedAdapter(mesh="toy", stream_id=str(uuid.uuid4())), port)
    print(json.dumps({"grpc": server.address}), flush=True)
    await server.serve_until_signalled()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="a scripted (uncapped) toy adapter")
    parser.add_argument("--port", type=int, default=0)
    asyncio.run(_serve_forever(parser.parse_args().port))
