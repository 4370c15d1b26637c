"""A scripted adapter and a small registry, for exercising the event hub over real gRPC.

`ScriptedAdapter` implements the adapter RPCs the hub uses (GetInfo, StreamEvents,
GetOperation) over an in-memory event log the test appends to; it can end streams with
RESOURCE_EXHAUSTED after a number of events (as a real adapter does with a slow follower),
change its event stream id (a lost event log), and it records every StreamEvents request.
`StaticRegistry` is the registry surface the hub reads, with real channels.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import grpc  # type: ignore[import-untyped, unused-ignore]
import grpc.aio  # type: ignore[import-untyped, unused-ignore]

from meshplane.adapter.v1 import adapter_pb2 as pb
from meshplane.adapter.v1 import adapter_pb2_grpc as pb_grpc
from serving import GrpcServer, ServerConfig, dial

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
        self._changed = asyncio.Condition()

    async def emit(
        self,
        count: int = 1,
        *,
        operation_id: str = "",
        state: int = pb.OPERATION_STATE_UNSPECIFIED,
        severity: int = pb.EVENT_SEVERITY_INFO,
    ) -> list[pb.Event]:
        """Append events to the log and wake the streams."""
        added = []
        for _ in range(count):
            event = pb.Event(
                sequence=len(self.events) + 1,
                operation_id=operation_id,
                severity=severity,  # type: ignore[arg-type]
                summary=f"event {len(self.events) + 1}",
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

    ListOperations = _unimplemented
    ListMeshVersions = _unimplemented
    ApplyOperation = _unimplemented
    CancelOperation = _unimplemented
    GetMeshStatus = _unimplemented

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
        position = request.after_sequence
        sent = 0
        while True:
            if self.stream_id != stream_id:
                await context.abort(grpc.StatusCode.UNAVAILABLE, "event log reset")
            while position < len(self.events):
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


async def serve(adapter: ScriptedAdapter, port: int = 0) -> GrpcServer:
    """Start a gRPC server for ``adapter`` on 127.0.0.1 (``port`` 0: any)."""
    server = GrpcServer(ServerConfig(host="127.0.0.1", port=port, grace_seconds=0))
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
        self._channels[address] = dial(address, tls=None)
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
